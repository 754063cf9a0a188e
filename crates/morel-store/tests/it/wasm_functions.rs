//! Compiled functions by name: one function per name, a `FAILED` one replaced in place,
//! deletion with its executions, and migration 8's renaming of names given twice before it.

use std::sync::Arc;

use morel_store::*;
use serde_json::json;

use crate::backend::for_each_backend;

for_each_backend!(
    a_name_belongs_to_one_function,
    only_a_failed_function_is_replaced,
    deleting_a_function_deletes_its_executions,
);

fn function(id: &str, name: &str) -> WasmFunctionRow {
    let now = morel_core::time::now_ms();
    WasmFunctionRow {
        id: id.into(),
        name: name.into(),
        language: "wat".into(),
        source: "(module)".into(),
        status: WasmFunctionStatus::Pending,
        compile_error: None,
        wasm: None,
        wasm_size: None,
        created_at: now,
        updated_at: now,
    }
}

fn execution(id: &str, function_id: &str) -> ExecutionRow {
    ExecutionRow {
        id: crate::exec(id),
        function_id: function_id.into(),
        status: ExecutionStatus::Running,
        input: "{}".into(),
        output: None,
        error: None,
        started_at: morel_core::time::now_ms(),
        completed_at: None,
    }
}

/// Takes `id` through the queue to `FAILED`, as the results consumer does.
async fn fail(store: &dyn Store, id: &str) {
    let msg = store
        .queue_send("compilation_results", &json!({}))
        .await
        .unwrap();
    assert!(
        store
            .apply_compile_result(
                id,
                &CompileOutcome::Failed("syntax error".into()),
                "compilation_results",
                msg
            )
            .await
            .unwrap()
    );
}

async fn a_name_belongs_to_one_function(store: Arc<dyn Store>) {
    store
        .insert_wasm_function(&function("f1", "echo"))
        .await
        .unwrap();
    match store.insert_wasm_function(&function("f2", "echo")).await {
        Err(StoreError::Duplicate { what, value }) => {
            assert_eq!((what, value.as_str()), ("function", "echo"))
        }
        other => panic!("a second `echo` was not refused as a duplicate: {other:?}"),
    }
    assert!(
        store
            .get_wasm_function("f2", false)
            .await
            .unwrap()
            .is_none()
    );
    let by_name = store
        .get_wasm_function_by_name("echo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_name.id.as_str(), by_name.wasm), ("f1", None));
    assert!(
        store
            .get_wasm_function_by_name("f1")
            .await
            .unwrap()
            .is_none(),
        "an id is not a name"
    );
    // Names are compared exactly.
    store
        .insert_wasm_function(&function("f3", "Echo"))
        .await
        .unwrap();
    assert_eq!(store.list_wasm_functions().await.unwrap().len(), 2);
}

async fn only_a_failed_function_is_replaced(store: Arc<dyn Store>) {
    // A new name: inserted, nothing replaced.
    assert_eq!(
        store
            .replace_failed_wasm_function(&function("f1", "echo"))
            .await
            .unwrap(),
        None
    );
    // Still compiling (and later READY): a duplicate, and the first one stays as it was.
    for status in [WasmFunctionStatus::Compiling, WasmFunctionStatus::Ready] {
        if status == WasmFunctionStatus::Ready {
            let msg = store
                .queue_send("compilation_results", &json!({}))
                .await
                .unwrap();
            store
                .apply_compile_result(
                    "f1",
                    &CompileOutcome::Ready(vec![0, 97, 115, 109]),
                    "compilation_results",
                    msg,
                )
                .await
                .unwrap();
        } else {
            store.set_wasm_function_status("f1", status).await.unwrap();
        }
        let got = store
            .replace_failed_wasm_function(&function("f2", "echo"))
            .await;
        assert!(
            matches!(got, Err(StoreError::Duplicate { .. })),
            "{status:?}: {got:?}"
        );
        let f1 = store.get_wasm_function("f1", false).await.unwrap().unwrap();
        assert_eq!((f1.name.as_str(), f1.status), ("echo", status));
        assert!(
            store
                .get_wasm_function("f2", false)
                .await
                .unwrap()
                .is_none()
        );
    }

    // FAILED: replaced by the new row in one step, its executions gone with it.
    store
        .insert_wasm_function(&function("g1", "broken"))
        .await
        .unwrap();
    fail(&*store, "g1").await;
    store
        .insert_execution(&execution("e1", "g1"))
        .await
        .unwrap();
    assert_eq!(
        store
            .replace_failed_wasm_function(&function("g2", "broken"))
            .await
            .unwrap()
            .as_deref(),
        Some("g1")
    );
    assert!(
        store
            .get_wasm_function("g1", false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_execution(crate::exec("e1"))
            .await
            .unwrap()
            .is_none()
    );
    let now = store
        .get_wasm_function_by_name("broken")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (now.id.as_str(), now.status),
        ("g2", WasmFunctionStatus::Pending)
    );
    // The FAILED row of another name is never touched.
    store
        .insert_wasm_function(&function("h1", "other"))
        .await
        .unwrap();
    fail(&*store, "h1").await;
    store
        .replace_failed_wasm_function(&function("g3", "third"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_wasm_function("h1", false)
            .await
            .unwrap()
            .unwrap()
            .status,
        WasmFunctionStatus::Failed
    );
    let mut names: Vec<String> = store
        .list_wasm_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    assert_eq!(names, ["broken", "echo", "other", "third"]);
}

async fn deleting_a_function_deletes_its_executions(store: Arc<dyn Store>) {
    store
        .insert_wasm_function(&function("f1", "echo"))
        .await
        .unwrap();
    store
        .insert_wasm_function(&function("f2", "kept"))
        .await
        .unwrap();
    store
        .insert_execution(&execution("e1", "f1"))
        .await
        .unwrap();
    store
        .insert_execution(&execution("e2", "f1"))
        .await
        .unwrap();
    store
        .insert_execution(&execution("e3", "f2"))
        .await
        .unwrap();

    assert!(store.delete_wasm_function("f1").await.unwrap());
    assert!(!store.delete_wasm_function("f1").await.unwrap());
    assert!(!store.delete_wasm_function("nope").await.unwrap());
    assert!(
        store
            .get_wasm_function("f1", false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_executions("f1", 10).await.unwrap().is_empty());
    assert!(
        store
            .get_execution(crate::exec("e1"))
            .await
            .unwrap()
            .is_none()
    );
    // Another function and its executions stay.
    assert_eq!(store.list_executions("f2", 10).await.unwrap().len(), 1);
    assert_eq!(store.list_wasm_functions().await.unwrap().len(), 1);
    // The name is free again.
    store
        .insert_wasm_function(&function("f3", "echo"))
        .await
        .unwrap();
}

/// Rows as a store at migration 7 could hold them: `echo` twice (f1 older than f2).
const BEFORE_8: &[(&str, &str)] = &[
    ("0190a000-0000-7000-8000-000000000001", "echo"),
    ("0190a000-0000-7000-8000-000000000002", "echo"),
    ("0190a000-0000-7000-8000-000000000003", "other"),
    ("0190a000-0000-7000-8000-000000000004", "echo"),
];

fn after_8() -> Vec<(String, String)> {
    vec![
        ("0190a000-0000-7000-8000-000000000001".into(), "echo".into()),
        (
            "0190a000-0000-7000-8000-000000000002".into(),
            "echo-0190a000-0000-7000-8000-000000000002".into(),
        ),
        (
            "0190a000-0000-7000-8000-000000000003".into(),
            "other".into(),
        ),
        (
            "0190a000-0000-7000-8000-000000000004".into(),
            "echo-0190a000-0000-7000-8000-000000000004".into(),
        ),
    ]
}

#[tokio::test]
async fn migration_8_keeps_the_oldest_of_a_name_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("morel.db");
    SqlStore::open_sqlite(&path).await.unwrap();
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    // Back to migration 7, then the duplicates it allowed.
    sqlx::raw_sql(
        "DROP INDEX wasm_functions_by_name; DELETE FROM morel_migrations WHERE version = 8;",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (id, name) in BEFORE_8 {
        sqlx::query("INSERT INTO wasm_functions (id, name, language, source, status, created_at, updated_at) VALUES (?, ?, 'wat', '', 'READY', 0, 0)")
            .bind(id)
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    let mut got: Vec<(String, String)> = store
        .list_wasm_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.name))
        .collect();
    got.sort();
    assert_eq!(got, after_8());
    assert!(matches!(
        store.insert_wasm_function(&function("new", "echo")).await,
        Err(StoreError::Duplicate { .. })
    ));
}

#[tokio::test]
async fn migration_8_keeps_the_oldest_of_a_name_on_postgres() {
    let db = crate::backend::ScratchDb::create().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    sqlx::raw_sql(
        "DROP INDEX wasm_functions_by_name; DELETE FROM morel_migrations WHERE version = 8;",
    )
    .execute(store.pool())
    .await
    .unwrap();
    for (id, name) in BEFORE_8 {
        sqlx::query("INSERT INTO wasm_functions (id, name, language, source, status, created_at, updated_at) VALUES ($1, $2, 'wat', '', 'READY', 0, 0)")
            .bind(id)
            .bind(name)
            .execute(store.pool())
            .await
            .unwrap();
    }
    store.close().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    let mut got: Vec<(String, String)> = store
        .list_wasm_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.name))
        .collect();
    got.sort();
    assert_eq!(got, after_8());
    assert!(matches!(
        store.insert_wasm_function(&function("new", "echo")).await,
        Err(StoreError::Duplicate { .. })
    ));
    store.close().await;
}
