// The command line is filled in by the Orleans service work (issue 3).
Console.Error.WriteLine("cloudctl: not yet wired.");
return 1;
