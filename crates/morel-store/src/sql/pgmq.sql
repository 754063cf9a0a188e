-- Morel's plain-SQL installation of the part of pgmq's API that Morel calls, for PostgreSQL
-- servers where the pgmq extension is not available (written for Morel, not pgmq's own file).
--
-- It keeps pgmq's layout and signatures so that the real extension can stand in for it and
-- tools that know pgmq can read Morel's queues:
--   schema `pgmq`; a `pgmq.meta` row per queue; per queue a live table `pgmq.q_<name>` and an
--   archive `pgmq.a_<name>`; functions create, send, read, set_vt, delete, archive.
-- Runs once per database (Morel's store skips it when `pgmq.read` already exists), inside the
-- store's migration transaction and advisory lock.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE IF NOT EXISTS pgmq.meta (
    queue_name VARCHAR UNIQUE NOT NULL,
    is_partitioned BOOLEAN NOT NULL,
    is_unlogged BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What `read` returns: one row of a queue table.
CREATE TYPE pgmq.message_record AS (
    msg_id BIGINT,
    read_ct INTEGER,
    enqueued_at TIMESTAMPTZ,
    last_read_at TIMESTAMPTZ,
    vt TIMESTAMPTZ,
    message JSONB,
    headers JSONB
);

-- The table behind a queue: `q_<name>` (live) or `a_<name>` (archive). Names are limited to
-- letters, digits and `_` so they are safe to splice into identifiers.
CREATE FUNCTION pgmq.format_table_name(queue_name TEXT, prefix TEXT)
RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_]{1,47}$' THEN
        RAISE EXCEPTION 'invalid queue name %: use 1 to 47 letters, digits or _', queue_name;
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- Creates a queue's tables if they do not exist yet. Serialised per queue, so two servers
-- creating the same queue at once do not collide in the catalog.
CREATE FUNCTION pgmq."create"(queue_name TEXT)
RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    live TEXT := pgmq.format_table_name(queue_name, 'q');
    done TEXT := pgmq.format_table_name(queue_name, 'a');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgmq.create ' || live));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct INTEGER NOT NULL DEFAULT 0,
            enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_read_at TIMESTAMPTZ,
            vt TIMESTAMPTZ NOT NULL,
            message JSONB,
            headers JSONB)', live);
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id BIGINT PRIMARY KEY,
            read_ct INTEGER NOT NULL DEFAULT 0,
            enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_read_at TIMESTAMPTZ,
            archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            vt TIMESTAMPTZ NOT NULL,
            message JSONB,
            headers JSONB)', done);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt)', live || '_vt_idx', live);
    EXECUTE 'INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
             VALUES ($1, false, false) ON CONFLICT DO NOTHING'
    USING queue_name;
END;
$fn$;

-- Appends a message, visible after `delay` seconds; returns its id.
CREATE FUNCTION pgmq.send(queue_name TEXT, msg JSONB, delay INTEGER DEFAULT 0)
RETURNS SETOF BIGINT LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message)
         VALUES (clock_timestamp() + make_interval(secs => $2), $1)
         RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
    USING msg, delay;
END;
$fn$;

-- Takes up to `qty` visible messages, oldest first, hides each for `vt` seconds and counts
-- the read. Rows another reader holds are skipped, never waited for or handed out twice.
CREATE FUNCTION pgmq.read(queue_name TEXT, vt INTEGER, qty INTEGER)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH taken AS (
             SELECT msg_id FROM pgmq.%1$I
             WHERE vt <= clock_timestamp()
             ORDER BY msg_id
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE pgmq.%1$I AS m
         SET read_ct = m.read_ct + 1,
             last_read_at = clock_timestamp(),
             vt = clock_timestamp() + make_interval(secs => $2)
         FROM taken
         WHERE m.msg_id = taken.msg_id
         RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers',
        pgmq.format_table_name(queue_name, 'q'))
    USING qty, vt;
END;
$fn$;

-- Hides a message for `vt` seconds from now (a consumer extending its hold); returns the
-- message, or no row when there is no such message.
CREATE FUNCTION pgmq.set_vt(queue_name TEXT, msg_id BIGINT, vt INTEGER)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'UPDATE pgmq.%I
         SET vt = clock_timestamp() + make_interval(secs => $2)
         WHERE msg_id = $1
         RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
        pgmq.format_table_name(queue_name, 'q'))
    USING msg_id, vt;
END;
$fn$;

-- Drops a message for good; false when there was no such message.
CREATE FUNCTION pgmq.delete(queue_name TEXT, msg_id BIGINT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$
DECLARE
    gone BIGINT;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1 RETURNING msg_id',
                   pgmq.format_table_name(queue_name, 'q'))
    USING msg_id INTO gone;
    RETURN gone IS NOT NULL;
END;
$fn$;

-- Moves a message from the live table to the archive; false when there was no such message.
CREATE FUNCTION pgmq.archive(queue_name TEXT, msg_id BIGINT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$
DECLARE
    moved BIGINT;
BEGIN
    EXECUTE format(
        'WITH gone AS (
             DELETE FROM pgmq.%I WHERE msg_id = $1
             RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
         INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
         SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM gone
         RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
    USING msg_id INTO moved;
    RETURN moved IS NOT NULL;
END;
$fn$;
