// The silo host is filled in by the Orleans service work (issue 3).
Console.Error.WriteLine("Cloud silo: not yet wired.");
return 1;
