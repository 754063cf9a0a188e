//! Numbered, linear schema migrations. Append only: a shipped migration never changes.
//! The same list runs on every backend, so keep the SQL to the portable subset
//! (TEXT, BIGINT, no AUTOINCREMENT-only syntax in shared tables).

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE apps (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    active_release BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    number BIGINT NOT NULL,
    env TEXT NOT NULL,
    digest TEXT NOT NULL,
    manifest TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (namespace, app, number)
);
CREATE TABLE resources (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    runtime TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    digest TEXT NOT NULL,
    release BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    endpoint_url TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app, name)
);
CREATE TABLE functions (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    resource TEXT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    is_async BIGINT NOT NULL,
    http_method TEXT,
    http_path TEXT,
    PRIMARY KEY (namespace, app, name)
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    resource TEXT NOT NULL,
    release BIGINT NOT NULL,
    digest TEXT NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    pid BIGINT,
    port BIGINT,
    restarts BIGINT NOT NULL,
    last_error TEXT,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX instances_by_app ON instances (namespace, app);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream TEXT NOT NULL,
    source TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX logs_by_app ON logs (namespace, app, id);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE trusted_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE packages (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app)
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE queue_messages (
    msg_id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    read_ct BIGINT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    vt BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX queue_messages_ready ON queue_messages (queue, vt);
CREATE TABLE queue_archive (
    msg_id BIGINT NOT NULL,
    queue TEXT NOT NULL,
    read_ct BIGINT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    archived_at BIGINT NOT NULL,
    dead BIGINT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (queue, msg_id)
);
CREATE TABLE wasm_functions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    compile_error TEXT,
    wasm BLOB,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    started_at BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX executions_by_function ON executions (function_id, started_at);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE budgets (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    max_instances BIGINT,
    cpu_millis BIGINT,
    memory_mb BIGINT,
    scale_min BIGINT,
    scale_max BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app)
);
"#,
    ),
    (
        4,
        r#"
CREATE TABLE environments (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    branch TEXT,
    repo_url TEXT,
    status TEXT NOT NULL,
    url TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app, name)
);
CREATE TABLE deploys (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    repo_url TEXT NOT NULL,
    branch TEXT,
    main_branch TEXT,
    env TEXT,
    digest TEXT,
    release BIGINT,
    status TEXT NOT NULL,
    error TEXT,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE deploy_steps (
    deploy_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    step TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (deploy_id, step)
);
CREATE TABLE secrets (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app, env, name)
);
CREATE TABLE certificates (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    key_sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app, env)
);
"#,
    ),
    (
        5,
        // Nodes: machines whose agents joined (many-machine mode), with their heartbeat.
        // On PostgreSQL the queues are pgmq's own tables (see sql/pgmq.sql), whose archive has
        // no dead-letter flag: archiving as dead records the message here in the same
        // transaction. SQLite keeps the flag in `queue_archive.dead` and leaves this empty.
        r#"
CREATE TABLE queue_dead_letters (
    queue TEXT NOT NULL,
    msg_id BIGINT NOT NULL,
    PRIMARY KEY (queue, msg_id)
);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    state TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
"#,
    ),
    (
        6,
        // Placements (many machines): which node runs which instance of an active release.
        r#"
CREATE TABLE placements (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    release BIGINT NOT NULL,
    resource TEXT NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    endpoint TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX placements_by_node ON placements (node);
"#,
    ),
    (
        7,
        // App identities: the unprivileged Unix uid (== gid) each app's workers run as,
        // allocated once from the configured range and never freed, so restarts and every
        // machine agree and a uid never passes to another app.
        r#"
CREATE TABLE app_identities (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    uid BIGINT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, app)
);
"#,
    ),
    (
        8,
        // A compiled function's name is unique, so it can stand for its id. Names given twice
        // before this: the oldest keeps it (ids are UUIDv7, ordered by creation), each later
        // one becomes `NAME-ID`.
        r#"
UPDATE wasm_functions SET name = name || '-' || id
WHERE EXISTS (
    SELECT 1 FROM wasm_functions AS older
    WHERE older.name = wasm_functions.name AND older.id < wasm_functions.id
);
CREATE UNIQUE INDEX wasm_functions_by_name ON wasm_functions (name);
"#,
    ),
    (
        9,
        // State every server shares through the store, so no server needs another's disk:
        // bundle bytes in chunks (any server serves any bundle; a server's blob directory is
        // a cache), and platform settings such as the admin token's hash and the secrets
        // data key sealed by the servers' key-encryption key.
        r#"
CREATE TABLE blob_contents (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    chunks BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE blob_chunks (
    digest TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (digest, seq)
);
CREATE TABLE platform_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
    ),
];
