//! Which database a command's store lives in, and `morel export` / `morel import`: moving an
//! embedded (SQLite) installation, bundles included, to PostgreSQL.
//!
//! An export is a directory: `morel-export.json` (every persistent table and the waiting queue
//! messages, see `morel_store::transfer`), `blobs/` (each bundle and its signature) and the
//! keys that open the installation's secrets: `keys/kek.key` (the key-encryption key that seals
//! the secrets key in the store) and, from installations older than that, `keys/secrets.key`.
//! The store keeps secrets sealed (opaque text that moves like any other cell), so without
//! these keys the imported secrets could not be opened; `morel import` puts them in the new
//! state directory. The export directory is therefore as sensitive as the state directory.
//! The admin token and the server's signing key are not exported: the new server makes its
//! own (the old token's hash is left out of the import), and the bundles stay verifiable
//! through the trusted public keys, which are exported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use morel_store::transfer::Dump;
use morel_store::{SqlStore, Store};
use sha2::Digest as _;

use crate::args::{ExportArgs, ImportArgs};

const DUMP_FILE: &str = "morel-export.json";
/// The secrets key, relative to a state directory and to an export (the same path in both).
const SECRETS_KEY: &str = "keys/secrets.key";
/// The key-encryption key, relative to a state directory and to an export.
const KEK: &str = "keys/kek.key";

/// Where a state directory's KEK is: `MOREL_KEK_FILE`, else `keys/kek.key` inside it.
fn kek_path(state_dir: &Path) -> PathBuf {
    std::env::var_os(morel_core::env_vars::MOREL_KEK_FILE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join(KEK))
}

/// The store at `database_url` when given, else the embedded one in the state directory.
pub async fn open_store(database_url: Option<&str>, state_dir: &Path) -> Result<Arc<dyn Store>> {
    match database_url {
        Some(url) => morel_store::open(url)
            .await
            .with_context(|| format!("opening the store at {}", morel_store::redact_url(url))),
        None => {
            let path = state_dir.join("morel.db");
            let store = SqlStore::open_sqlite(&path)
                .await
                .with_context(|| format!("opening the store {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

pub async fn export(args: ExportArgs) -> Result<()> {
    let db = args.state_dir.join("morel.db");
    if !db.is_file() {
        bail!(
            "{} does not exist: is --state-dir an installation's state directory?",
            db.display()
        );
    }
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{} is not empty: export into a new directory",
            args.out.display()
        );
    }
    let store = SqlStore::open_sqlite(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let dump = store.export().await.context("reading the store")?;
    let out_blobs = args.out.join("blobs");
    std::fs::create_dir_all(&out_blobs)
        .with_context(|| format!("creating {}", out_blobs.display()))?;
    let digests = bundle_digests(&dump)?;
    for digest in &digests {
        for file in bundle_files(digest) {
            let from = args.state_dir.join("blobs").join(&file);
            std::fs::copy(&from, out_blobs.join(&file))
                .with_context(|| format!("copying bundle file {}", from.display()))?;
        }
    }
    let has_key = copy_secrets_key(
        &args.state_dir.join(SECRETS_KEY),
        &args.out.join(SECRETS_KEY),
    )? | copy_secrets_key(&kek_path(&args.state_dir), &args.out.join(KEK))?;
    let json = serde_json::to_vec(&dump)?;
    std::fs::write(args.out.join(DUMP_FILE), json)?;
    let rows: usize = dump.tables.iter().map(|t| t.rows.len()).sum();
    println!(
        "exported {rows} rows from {} tables, {} queued messages and {} bundles to {}{}",
        dump.tables.len(),
        dump.queue_messages.len(),
        digests.len(),
        args.out.display(),
        if has_key {
            " (with the secrets key: keep the export as private as the state directory)"
        } else {
            ""
        }
    );
    Ok(())
}

pub async fn import(args: ImportArgs) -> Result<()> {
    if !morel_store::is_postgres_url(&args.database_url) {
        bail!(
            "--database-url must be a postgres:// URL (got {})",
            morel_store::redact_url(&args.database_url)
        );
    }
    let dump_path = args.dir.join(DUMP_FILE);
    let text = std::fs::read(&dump_path)
        .with_context(|| format!("reading {} (written by morel export)", dump_path.display()))?;
    let mut dump: Dump = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a Morel export", dump_path.display()))?;
    // The new server makes its own admin token.
    for table in dump
        .tables
        .iter_mut()
        .filter(|t| t.name == "platform_settings")
    {
        let name = table.columns.iter().position(|c| c == "name");
        table.rows.retain(|row| {
            name.and_then(|i| row.get(i)).and_then(|c| c.as_text())
                != Some(morel_control::auth::ADMIN_TOKEN_SETTING)
        });
    }
    // Bundles first, each checked against its digest: a store row never points at a missing
    // or altered bundle.
    let blobs = args.state_dir.join("blobs");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let digests = bundle_digests(&dump)?;
    for digest in &digests {
        let [bundle, sig] = bundle_files(digest);
        let from = args.dir.join("blobs").join(&bundle);
        let bytes =
            std::fs::read(&from).with_context(|| format!("reading bundle {}", from.display()))?;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != *digest {
            bail!(
                "{} does not match its digest (sha256 {actual})",
                from.display()
            );
        }
        std::fs::write(blobs.join(&bundle), &bytes)?;
        let sig_from = args.dir.join("blobs").join(&sig);
        std::fs::copy(&sig_from, blobs.join(&sig))
            .with_context(|| format!("copying {}", sig_from.display()))?;
    }
    import_secrets_key(
        &args.dir.join(SECRETS_KEY),
        &args.state_dir.join(SECRETS_KEY),
    )?;
    import_secrets_key(&args.dir.join(KEK), &kek_path(&args.state_dir))?;
    let store = SqlStore::connect_postgres(&args.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {}",
                morel_store::redact_url(&args.database_url)
            )
        })?;
    let summary = store.import(&dump).await.context("importing")?;
    store.close().await;
    let rows: u64 = summary.tables.iter().map(|(_, n)| n).sum();
    println!(
        "imported {rows} rows, {} queued messages and {} bundles into {}; start the server with: \
         morel up --database-url {} --state-dir {}",
        summary.queue_messages,
        digests.len(),
        morel_store::redact_url(&args.database_url),
        morel_store::redact_url(&args.database_url),
        args.state_dir.display()
    );
    Ok(())
}

/// Copies the secrets key (if the installation has one) into the export, private to its owner.
fn copy_secrets_key(from: &Path, to: &Path) -> Result<bool> {
    let key = match std::fs::read(from) {
        Ok(key) => key,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", from.display())),
    };
    write_private(to, &key)?;
    Ok(true)
}

/// Installs the exported secrets key in the new state directory. A state directory that
/// already holds a different key is refused: the imported secrets would not open with it.
fn import_secrets_key(from: &Path, to: &Path) -> Result<()> {
    let key = match std::fs::read(from) {
        Ok(key) => key,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", from.display())),
    };
    match std::fs::read(to) {
        Ok(existing) if existing == key => Ok(()),
        Ok(_) => bail!(
            "{} already holds a different secrets key: the imported secrets would not open with \
             it; import into a new --state-dir",
            to.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_private(to, &key),
        Err(e) => Err(e).with_context(|| format!("reading {}", to.display())),
    }
}

/// Writes a new file readable only by its owner (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Every bundle digest the store's `blobs` table names, validated (they become file names).
fn bundle_digests(dump: &Dump) -> Result<Vec<String>> {
    let Some(table) = dump.tables.iter().find(|t| t.name == "blobs") else {
        return Ok(Vec::new());
    };
    table
        .column("digest")
        .into_iter()
        .map(|c| {
            let text = c.as_text().unwrap_or_default();
            let digest: morel_core::Digest = text
                .parse()
                .with_context(|| format!("blobs row has a bad digest {c:?}"))?;
            Ok(digest.to_string())
        })
        .collect()
}

/// A bundle's two files in a blob directory (as `morel_agent::BlobDir` names them).
fn bundle_files(digest: &str) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("{digest}.bundle")),
        PathBuf::from(format!("{digest}.sig")),
    ]
}
