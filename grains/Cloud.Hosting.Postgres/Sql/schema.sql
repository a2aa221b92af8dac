-- Cloud: PostgreSQL schema for the Orleans ADO.NET clustering and grain-storage providers.
--
-- Written for Microsoft.Orleans.Clustering.AdoNet and Microsoft.Orleans.Persistence.AdoNet 10.4.x
-- with the "Npgsql" invariant. The providers read their SQL from the table OrleansQuery by key and
-- bind parameters by name (@DeploymentId, @Address, ...); they read result columns by name
-- (Address, Port, Version, PayloadBinary, ...). Everything else here (table layout, functions,
-- the status_changed_at column) is ours.
--
-- Idempotent: every statement can run again on a database that already has the schema, and a
-- re-run replaces the stored queries and functions with the ones in this file. PostgresSchema
-- runs it inside one transaction under an advisory lock, so silos starting at once do not race.
-- Needs PostgreSQL 15 or newer (UNIQUE ... NULLS NOT DISTINCT).

-- The providers run "SELECT QueryKey, QueryText FROM OrleansQuery"; unquoted identifiers fold to
-- lower case, so the table is orleansquery with columns querykey and querytext.
CREATE TABLE IF NOT EXISTS orleansquery
(
    querykey  varchar(64) NOT NULL PRIMARY KEY,
    querytext text        NOT NULL
);

---------------------------------------------------------------------------------------------------
-- Membership (clustering)
---------------------------------------------------------------------------------------------------

-- One row per cluster (Orleans calls it the deployment id): the membership table's version, the
-- optimistic-concurrency token every membership change must present and bump.
CREATE TABLE IF NOT EXISTS orleans_membership_version
(
    deployment_id varchar(150) NOT NULL PRIMARY KEY,
    version       integer      NOT NULL DEFAULT 0,
    changed_at    timestamptz  NOT NULL DEFAULT now()
);

-- One row per silo incarnation (address, port, generation).
CREATE TABLE IF NOT EXISTS orleans_membership
(
    deployment_id     varchar(150) NOT NULL
        REFERENCES orleans_membership_version (deployment_id) ON DELETE CASCADE,
    address           varchar(45)  NOT NULL,
    port              integer      NOT NULL,
    generation        integer      NOT NULL,
    silo_name         varchar(150) NOT NULL,
    host_name         varchar(150) NOT NULL,
    -- Orleans.Runtime.SiloStatus: 1 Created, 2 Joining, 3 Active, 4 ShuttingDown, 5 Stopping, 6 Dead.
    status            integer      NOT NULL,
    proxy_port        integer      NOT NULL DEFAULT 0,
    -- "silo,time|silo,time": the suspicion votes, in the providers' own text format.
    suspect_times     text         NULL,
    start_time        timestamptz  NOT NULL,
    i_am_alive_time   timestamptz  NOT NULL,
    -- Ours: when status last changed, by the database clock. Operators and the failure-detection
    -- tests read it to see how long after a crash a silo was declared dead.
    status_changed_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT orleans_membership_pk PRIMARY KEY (deployment_id, address, port, generation),
    CONSTRAINT orleans_membership_status_known CHECK (status BETWEEN 0 AND 6)
);

CREATE INDEX IF NOT EXISTS orleans_membership_gateways
    ON orleans_membership (deployment_id, status);

-- Inserts a silo's row when the caller still holds the current table version, and bumps the
-- version. Returns false (and changes nothing) on a stale version or an existing row.
CREATE OR REPLACE FUNCTION orleans_membership_insert(
    p_deployment_id   text,
    p_address         text,
    p_port            integer,
    p_generation      integer,
    p_silo_name       text,
    p_host_name       text,
    p_status          integer,
    p_proxy_port      integer,
    p_start_time      timestamptz,
    p_i_am_alive_time timestamptz,
    p_version         integer)
    RETURNS boolean
    LANGUAGE plpgsql
AS
$fn$
BEGIN
    -- Lock the version row first so two silos cannot both pass the check with the same version.
    PERFORM 1
    FROM orleans_membership_version
    WHERE deployment_id = p_deployment_id
      AND version = p_version
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    INSERT INTO orleans_membership (deployment_id, address, port, generation, silo_name, host_name,
                                    status, proxy_port, start_time, i_am_alive_time)
    VALUES (p_deployment_id, p_address, p_port, p_generation, p_silo_name, p_host_name,
            p_status, p_proxy_port, p_start_time, p_i_am_alive_time)
    ON CONFLICT ON CONSTRAINT orleans_membership_pk DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE orleans_membership_version
    SET version    = version + 1,
        changed_at = now()
    WHERE deployment_id = p_deployment_id;
    RETURN true;
END;
$fn$;

-- Updates a silo's status, suspicion votes and liveness time when the caller still holds the
-- current table version, and bumps the version. Returns false on a stale version or a missing row.
CREATE OR REPLACE FUNCTION orleans_membership_update(
    p_deployment_id   text,
    p_address         text,
    p_port            integer,
    p_generation      integer,
    p_status          integer,
    p_suspect_times   text,
    p_i_am_alive_time timestamptz,
    p_version         integer)
    RETURNS boolean
    LANGUAGE plpgsql
AS
$fn$
BEGIN
    PERFORM 1
    FROM orleans_membership_version
    WHERE deployment_id = p_deployment_id
      AND version = p_version
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE orleans_membership
    SET status            = p_status,
        suspect_times     = p_suspect_times,
        i_am_alive_time   = p_i_am_alive_time,
        status_changed_at = CASE WHEN status = p_status THEN status_changed_at ELSE now() END
    WHERE deployment_id = p_deployment_id
      AND address = p_address
      AND port = p_port
      AND generation = p_generation;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE orleans_membership_version
    SET version    = version + 1,
        changed_at = now()
    WHERE deployment_id = p_deployment_id;
    RETURN true;
END;
$fn$;

---------------------------------------------------------------------------------------------------
-- Grain state (persistence)
---------------------------------------------------------------------------------------------------

-- One row per (service, grain type, grain id). The two hashes come first in the unique index so a
-- lookup narrows on integers before comparing strings; the strings make hash collisions harmless.
CREATE TABLE IF NOT EXISTS orleans_grain_state
(
    service_id          varchar(150)  NOT NULL,
    grain_type_hash     integer       NOT NULL,
    grain_type          varchar(512)  NOT NULL,
    grain_id_hash       integer       NOT NULL,
    grain_id_n0         bigint        NOT NULL,
    grain_id_n1         bigint        NOT NULL,
    grain_id_extension  varchar(512)  NULL,
    payload             bytea         NULL,
    version             integer       NOT NULL,
    modified_at         timestamptz   NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS orleans_grain_state_key
    ON orleans_grain_state (grain_id_hash, grain_type_hash, service_id, grain_type,
                            grain_id_n0, grain_id_n1, grain_id_extension) NULLS NOT DISTINCT;

-- Writes a grain's state. With no version the grain believes no row exists and one is inserted at
-- version 1; with a version the row is replaced only if it still has that version. Returns the new
-- version, or NULL when the caller's version is stale (the provider turns NULL into a conflict).
CREATE OR REPLACE FUNCTION orleans_grain_state_write(
    p_grain_id_hash      integer,
    p_grain_id_n0        bigint,
    p_grain_id_n1        bigint,
    p_grain_type_hash    integer,
    p_grain_type         text,
    p_grain_id_extension text,
    p_service_id         text,
    p_version            integer,
    p_payload            bytea)
    RETURNS integer
    LANGUAGE plpgsql
AS
$fn$
DECLARE
    new_version integer;
BEGIN
    IF p_version IS NULL THEN
        INSERT INTO orleans_grain_state (service_id, grain_type_hash, grain_type, grain_id_hash,
                                         grain_id_n0, grain_id_n1, grain_id_extension, payload, version)
        VALUES (p_service_id, p_grain_type_hash, p_grain_type, p_grain_id_hash,
                p_grain_id_n0, p_grain_id_n1, p_grain_id_extension, p_payload, 1)
        ON CONFLICT DO NOTHING
        RETURNING version INTO new_version;
        RETURN new_version;
    END IF;

    UPDATE orleans_grain_state
    SET payload     = p_payload,
        version     = version + 1,
        modified_at = now()
    WHERE grain_id_hash = p_grain_id_hash
      AND grain_type_hash = p_grain_type_hash
      AND service_id = p_service_id
      AND grain_type = p_grain_type
      AND grain_id_n0 = p_grain_id_n0
      AND grain_id_n1 = p_grain_id_n1
      AND grain_id_extension IS NOT DISTINCT FROM p_grain_id_extension
      AND version = p_version
    RETURNING version INTO new_version;
    RETURN new_version;
END;
$fn$;

-- Clears a grain's state but keeps its row, so the version keeps growing across clear and write.
-- Returns the new version, or NULL when the caller's version is stale.
CREATE OR REPLACE FUNCTION orleans_grain_state_clear(
    p_grain_id_hash      integer,
    p_grain_id_n0        bigint,
    p_grain_id_n1        bigint,
    p_grain_type_hash    integer,
    p_grain_type         text,
    p_grain_id_extension text,
    p_service_id         text,
    p_version            integer)
    RETURNS integer
    LANGUAGE plpgsql
AS
$fn$
DECLARE
    new_version integer;
BEGIN
    UPDATE orleans_grain_state
    SET payload     = NULL,
        version     = version + 1,
        modified_at = now()
    WHERE grain_id_hash = p_grain_id_hash
      AND grain_type_hash = p_grain_type_hash
      AND service_id = p_service_id
      AND grain_type = p_grain_type
      AND grain_id_n0 = p_grain_id_n0
      AND grain_id_n1 = p_grain_id_n1
      AND grain_id_extension IS NOT DISTINCT FROM p_grain_id_extension
      AND version IS NOT DISTINCT FROM p_version
    RETURNING version INTO new_version;
    RETURN new_version;
END;
$fn$;

---------------------------------------------------------------------------------------------------
-- The stored queries, by the keys the providers look up.
---------------------------------------------------------------------------------------------------

INSERT INTO orleansquery (querykey, querytext)
VALUES
    ('InsertMembershipVersionKey', $q$
        WITH created AS (
            INSERT INTO orleans_membership_version (deployment_id) VALUES (@DeploymentId)
            ON CONFLICT (deployment_id) DO NOTHING
            RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM created);
    $q$),

    ('UpdateIAmAlivetimeKey', $q$
        UPDATE orleans_membership
        SET i_am_alive_time = @IAmAliveTime
        WHERE deployment_id = @DeploymentId
          AND address = @Address
          AND port = @Port
          AND generation = @Generation;
    $q$),

    ('InsertMembershipKey', $q$
        SELECT orleans_membership_insert(@DeploymentId, @Address, @Port, @Generation, @SiloName,
            @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version);
    $q$),

    ('UpdateMembershipKey', $q$
        SELECT orleans_membership_update(@DeploymentId, @Address, @Port, @Generation, @Status,
            @SuspectTimes, @IAmAliveTime, @Version);
    $q$),

    -- The version row always comes back, joined to the silo's row if there is one: the provider
    -- reads the table version from the first row and treats a NULL StartTime as "no entry".
    ('MembershipReadRowKey', $q$
        SELECT v.version AS "Version",
               m.address AS "Address", m.port AS "Port", m.generation AS "Generation",
               m.silo_name AS "SiloName", m.host_name AS "HostName", m.status AS "Status",
               m.proxy_port AS "ProxyPort", m.suspect_times AS "SuspectTimes",
               m.start_time AS "StartTime", m.i_am_alive_time AS "IAmAliveTime"
        FROM orleans_membership_version v
        LEFT JOIN orleans_membership m
            ON m.deployment_id = v.deployment_id
           AND m.address = @Address
           AND m.port = @Port
           AND m.generation = @Generation
        WHERE v.deployment_id = @DeploymentId;
    $q$),

    ('MembershipReadAllKey', $q$
        SELECT v.version AS "Version",
               m.address AS "Address", m.port AS "Port", m.generation AS "Generation",
               m.silo_name AS "SiloName", m.host_name AS "HostName", m.status AS "Status",
               m.proxy_port AS "ProxyPort", m.suspect_times AS "SuspectTimes",
               m.start_time AS "StartTime", m.i_am_alive_time AS "IAmAliveTime"
        FROM orleans_membership_version v
        LEFT JOIN orleans_membership m ON m.deployment_id = v.deployment_id
        WHERE v.deployment_id = @DeploymentId;
    $q$),

    ('GatewaysQueryKey', $q$
        SELECT address AS "Address", proxy_port AS "ProxyPort", generation AS "Generation"
        FROM orleans_membership
        WHERE deployment_id = @DeploymentId
          AND status = @Status
          AND proxy_port > 0;
    $q$),

    -- Deleting the version row removes the silos' rows through the foreign key.
    ('DeleteMembershipTableEntriesKey', $q$
        DELETE FROM orleans_membership_version WHERE deployment_id = @DeploymentId;
    $q$),

    -- Only silos that are no longer active and have not reported in since the cutoff are defunct.
    ('CleanupDefunctSiloEntriesKey', $q$
        DELETE FROM orleans_membership
        WHERE deployment_id = @DeploymentId
          AND i_am_alive_time < @IAmAliveTime
          AND status <> 3;
    $q$),

    ('ReadFromStorageKey', $q$
        SELECT payload AS "PayloadBinary", version AS "Version"
        FROM orleans_grain_state
        WHERE grain_id_hash = @GrainIdHash
          AND grain_type_hash = @GrainTypeHash
          AND service_id = @ServiceId
          AND grain_type = @GrainTypeString
          AND grain_id_n0 = @GrainIdN0
          AND grain_id_n1 = @GrainIdN1
          AND grain_id_extension IS NOT DISTINCT FROM @GrainIdExtensionString;
    $q$),

    ('WriteToStorageKey', $q$
        SELECT orleans_grain_state_write(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash,
            @GrainTypeString, @GrainIdExtensionString, @ServiceId, @GrainStateVersion,
            @PayloadBinary) AS "NewGrainStateVersion";
    $q$),

    ('ClearStorageKey', $q$
        SELECT orleans_grain_state_clear(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash,
            @GrainTypeString, @GrainIdExtensionString, @ServiceId, @GrainStateVersion)
            AS "NewGrainStateVersion";
    $q$),

    -- Used when the provider is configured with DeleteStateOnClear: the row goes away, and the
    -- returned value (old version + 1) tells the provider the delete matched its version.
    ('DeleteStorageKey', $q$
        DELETE FROM orleans_grain_state
        WHERE grain_id_hash = @GrainIdHash
          AND grain_type_hash = @GrainTypeHash
          AND service_id = @ServiceId
          AND grain_type = @GrainTypeString
          AND grain_id_n0 = @GrainIdN0
          AND grain_id_n1 = @GrainIdN1
          AND grain_id_extension IS NOT DISTINCT FROM @GrainIdExtensionString
          AND version = @GrainStateVersion
        RETURNING version + 1 AS "NewGrainStateVersion";
    $q$)
ON CONFLICT (querykey) DO UPDATE SET querytext = EXCLUDED.querytext;
