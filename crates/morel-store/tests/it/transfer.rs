//! Moving an embedded (SQLite) installation to PostgreSQL: export, import, and the imported
//! store behaving as the original did.

use morel_core::ResourceStatus;
use morel_core::Runtime;
use morel_store::transfer::Dump;
use morel_store::*;
use serde_json::json;

use crate::{backend, digest, key};

async fn fill(store: &SqlStore) {
    let app = key("moved");
    store.ensure_app(&app).await.unwrap();
    store
        .create_release(&app, "production", &digest(1), "{\"m\":1}", "{\"A\":\"b\"}")
        .await
        .unwrap();
    store
        .set_release_status(&app, 1, morel_core::ReleaseStatus::Ready, None)
        .await
        .unwrap();
    store.set_active_release(&app, Some(1)).await.unwrap();
    store
        .upsert_resource(&ResourceRow {
            app: app.clone(),
            name: "default".into(),
            runtime: Runtime::Python,
            config_hash: "h".into(),
            digest: digest(2),
            release: 1,
            status: ResourceStatus::Deployed,
            error: None,
            endpoint_url: "/default/moved".into(),
            updated_at: 5,
        })
        .await
        .unwrap();
    store
        .replace_functions(
            &app,
            "default",
            &[FunctionRow {
                name: "sum".into(),
                resource: "default".into(),
                params: vec!["a".into()],
                is_async: false,
                http_method: Some("GET".into()),
                http_path: None,
            }],
        )
        .await
        .unwrap();
    let lines: Vec<_> = (0..3)
        .map(|i| NewLogLine {
            app: app.clone(),
            ts: 100 + i,
            stream: LogStream::Stdout,
            source: "i".into(),
            line: format!("old {i}"),
        })
        .collect();
    store.append_logs(&lines).await.unwrap();
    store
        .put_blob(&BlobRow {
            digest: digest(1),
            size: 3,
            signature: "k:sig".into(),
            key_id: "k".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .trust_key(&KeyRow {
            key_id: "k".into(),
            public_key: "pk".into(),
            name: "local".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .insert_wasm_function(&WasmFunctionRow {
            id: "f1".into(),
            name: "echo".into(),
            language: "wat".into(),
            source: "(module)".into(),
            status: WasmFunctionStatus::Ready,
            compile_error: None,
            wasm: Some(vec![0, 97, 115, 109, 255]),
            wasm_size: None,
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    store
        .queue_send("jobs", &json!({"execution": "e9"}))
        .await
        .unwrap();
    let done = store
        .queue_send("jobs", &json!({"done": true}))
        .await
        .unwrap();
    store.queue_delete("jobs", done).await.unwrap();
    // App identities move too, a deleted app's included (its uid stays its own).
    assert_eq!(store.app_uid(&app, 200_000, 10).await.unwrap(), 200_000);
    let deleted = key("deleted");
    store.ensure_app(&deleted).await.unwrap();
    assert_eq!(store.app_uid(&deleted, 200_000, 10).await.unwrap(), 200_001);
    assert!(store.delete_app(&deleted).await.unwrap());
}

#[tokio::test]
async fn sqlite_installation_moves_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlStore::open_sqlite(&dir.path().join("morel.db"))
        .await
        .unwrap();
    fill(&sqlite).await;
    let dump = sqlite.export().await.unwrap();
    // The dump survives its file format.
    let text = serde_json::to_string(&dump).unwrap();
    let dump: Dump = serde_json::from_str(&text).unwrap();
    assert!(
        dump.tables.iter().all(|t| t.name != "instances"),
        "running instances belong to the old machine"
    );

    let db = backend::ScratchDb::create().await;
    let pg = SqlStore::connect_postgres(&db.url).await.unwrap();
    let summary = pg.import(&dump).await.unwrap();
    assert_eq!(summary.queue_messages, 1);
    assert!(
        summary.tables.contains(&("logs".to_owned(), 3)),
        "{summary:?}"
    );

    let app = key("moved");
    assert_eq!(
        pg.list_apps().await.unwrap(),
        sqlite.list_apps().await.unwrap()
    );
    assert_eq!(
        pg.list_releases(&app).await.unwrap(),
        sqlite.list_releases(&app).await.unwrap()
    );
    assert_eq!(
        pg.list_resources(&app).await.unwrap(),
        sqlite.list_resources(&app).await.unwrap()
    );
    assert_eq!(
        pg.list_functions(&app).await.unwrap(),
        sqlite.list_functions(&app).await.unwrap()
    );
    assert_eq!(
        pg.read_logs(&app, 0, 0, 100).await.unwrap(),
        sqlite.read_logs(&app, 0, 0, 100).await.unwrap()
    );
    assert_eq!(
        pg.get_blob(&digest(1)).await.unwrap(),
        sqlite.get_blob(&digest(1)).await.unwrap()
    );
    assert_eq!(
        pg.list_keys().await.unwrap(),
        sqlite.list_keys().await.unwrap()
    );
    assert_eq!(
        pg.get_wasm_function("f1", true)
            .await
            .unwrap()
            .unwrap()
            .wasm,
        Some(vec![0, 97, 115, 109, 255])
    );
    // The waiting job is on the pgmq queue; the deleted one is not.
    let jobs = pg.queue_read("jobs", 60_000, 10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|m| m.message.clone()).collect::<Vec<_>>(),
        vec![json!({"execution": "e9"})]
    );
    // New rows number after the imported ones.
    pg.append_logs(&[NewLogLine {
        app: app.clone(),
        ts: 200,
        stream: LogStream::Event,
        source: "platform".into(),
        line: "new".into(),
    }])
    .await
    .unwrap();
    let logs = pg.read_logs(&app, 0, 0, 100).await.unwrap();
    assert_eq!(logs.len(), 4);
    assert!(logs[3].id > logs[2].id);
    // Every app keeps its uid, and a new app gets a uid no moved app has.
    assert_eq!(
        pg.list_app_uids().await.unwrap(),
        sqlite.list_app_uids().await.unwrap()
    );
    assert_eq!(pg.app_uid(&app, 200_000, 10).await.unwrap(), 200_000);
    assert_eq!(pg.app_uid(&key("new"), 200_000, 10).await.unwrap(), 200_002);
    // A second import into the now non-empty database is refused and changes nothing.
    let err = pg.import(&dump).await.unwrap_err();
    assert!(err.to_string().contains("already has 1 app"), "{err}");
    assert_eq!(pg.read_logs(&app, 0, 0, 100).await.unwrap().len(), 4);
    pg.close().await;
}
