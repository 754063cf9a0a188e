//! Durable queue semantics (pgmq's), and seed 001's function/execution tables.

use morel_store::*;
use serde_json::json;

use std::sync::Arc;

use crate::backend::for_each_backend;

for_each_backend!(
    read_hides_for_the_visibility_timeout_and_counts_reads,
    compile_results_apply_once,
    concurrent_readers_never_get_the_same_message,
    a_job_is_queued_and_finished_with_its_execution,
    released_messages_are_visible_again_at_once,
);

/// After a restart of its only reader, a queue's hidden messages are read again at once, not
/// after their visibility timeout; other queues keep theirs.
async fn released_messages_are_visible_again_at_once(store: Arc<dyn Store>) {
    let a = store.queue_send("jobs", &json!({"n": 1})).await.unwrap();
    let b = store.queue_send("jobs", &json!({"n": 2})).await.unwrap();
    store.queue_send("other", &json!({"n": 3})).await.unwrap();
    assert_eq!(store.queue_read("jobs", 600_000, 1).await.unwrap().len(), 1);
    assert_eq!(
        store.queue_read("other", 600_000, 1).await.unwrap().len(),
        1
    );
    assert_eq!(store.queue_release_all("jobs").await.unwrap(), 1);
    let again = store.queue_read("jobs", 600_000, 10).await.unwrap();
    let mut ids: Vec<i64> = again.iter().map(|m| m.msg_id).collect();
    ids.sort();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(again.iter().find(|m| m.msg_id == a).unwrap().read_ct, 2);
    assert!(
        store
            .queue_read("other", 600_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.queue_release_all("jobs").await.unwrap(), 2);
}

async fn read_hides_for_the_visibility_timeout_and_counts_reads(store: Arc<dyn Store>) {
    let a = store.queue_send("jobs", &json!({"n": 1})).await.unwrap();
    let b = store.queue_send("jobs", &json!({"n": 2})).await.unwrap();
    store.queue_send("other", &json!({"n": 3})).await.unwrap();
    assert!(b > a);
    let first = store.queue_read("jobs", 60_000, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].msg_id, a);
    assert_eq!(first[0].read_ct, 1);
    assert_eq!(first[0].message, json!({"n": 1}));
    // Hidden: the next read gets the second message only, then nothing.
    let second = store.queue_read("jobs", 60_000, 10).await.unwrap();
    assert_eq!(second.iter().map(|m| m.msg_id).collect::<Vec<_>>(), vec![b]);
    assert!(
        store
            .queue_read("jobs", 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.queue_depth("jobs").await.unwrap().0, 2);
    // A consumer that "crashed" never deleted it: with a zero timeout it is visible again, read twice.
    let c = store.queue_send("retry", &json!("x")).await.unwrap();
    store.queue_read("retry", 0, 1).await.unwrap();
    let again = store.queue_read("retry", 60_000, 1).await.unwrap();
    assert_eq!((again[0].msg_id, again[0].read_ct), (c, 2));
    // Delete and archive.
    assert!(store.queue_delete("jobs", a).await.unwrap());
    assert!(!store.queue_delete("jobs", a).await.unwrap());
    assert!(store.queue_archive("jobs", b, true).await.unwrap());
    assert_eq!(store.queue_depth("jobs").await.unwrap().0, 0);
    let archived = store.queue_archived("jobs").await.unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].0.msg_id, b);
    assert!(archived[0].1, "archived as dead");
    let d = store.queue_send("jobs", &json!({"n": 4})).await.unwrap();
    assert!(store.queue_archive("jobs", d, false).await.unwrap());
    assert!(
        !store.queue_archive("jobs", d, false).await.unwrap(),
        "already archived"
    );
    let archived = store.queue_archived("jobs").await.unwrap();
    assert_eq!(
        archived
            .iter()
            .map(|(m, dead)| (m.msg_id, *dead))
            .collect::<Vec<_>>(),
        vec![(b, true), (d, false)]
    );
    assert_eq!(archived[1].0.message, json!({"n": 4}));
    assert_eq!(store.queue_depth("other").await.unwrap().0, 1);
}

async fn compile_results_apply_once(store: Arc<dyn Store>) {
    let now = morel_core::time::now_ms();
    let row = WasmFunctionRow {
        id: "f1".into(),
        name: "echo".into(),
        language: "wat".into(),
        source: "(module)".into(),
        status: WasmFunctionStatus::Pending,
        compile_error: None,
        wasm: None,
        wasm_size: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_wasm_function(&row).await.unwrap();
    store
        .set_wasm_function_status("f1", WasmFunctionStatus::Compiling)
        .await
        .unwrap();
    let m1 = store
        .queue_send("compilation_results", &json!({}))
        .await
        .unwrap();
    assert!(
        store
            .apply_compile_result(
                "f1",
                &CompileOutcome::Ready(vec![0, 97, 115, 109]),
                "compilation_results",
                m1
            )
            .await
            .unwrap()
    );
    // The same result delivered again, or a contradicting one, changes nothing.
    let m2 = store
        .queue_send("compilation_results", &json!({}))
        .await
        .unwrap();
    assert!(
        !store
            .apply_compile_result(
                "f1",
                &CompileOutcome::Failed("late".into()),
                "compilation_results",
                m2
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.queue_depth("compilation_results").await.unwrap().0,
        0,
        "applied results are deleted"
    );
    let got = store.get_wasm_function("f1", true).await.unwrap().unwrap();
    assert_eq!(got.status, WasmFunctionStatus::Ready);
    assert_eq!(got.wasm.as_deref(), Some(&[0u8, 97, 115, 109][..]));
    assert_eq!(got.compile_error, None);
    store
        .set_wasm_function_status("f1", WasmFunctionStatus::Compiling)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_wasm_function("f1", false)
            .await
            .unwrap()
            .unwrap()
            .status,
        WasmFunctionStatus::Ready,
        "never moves backwards"
    );
    let listed = store.list_wasm_functions().await.unwrap();
    assert_eq!((listed.len(), listed[0].wasm_size), (1, Some(4)));
    assert!(listed[0].wasm.is_none());

    let e = ExecutionRow {
        id: crate::exec("e1"),
        function_id: "f1".into(),
        status: ExecutionStatus::Running,
        input: "{}".into(),
        output: None,
        error: None,
        started_at: now,
        completed_at: None,
    };
    store.insert_execution(&e).await.unwrap();
    store
        .finish_execution(
            crate::exec("e1"),
            ExecutionStatus::Completed,
            Some("42"),
            None,
        )
        .await
        .unwrap();
    let got = store
        .get_execution(crate::exec("e1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.status, got.output.as_deref()),
        (ExecutionStatus::Completed, Some("42"))
    );
    assert!(got.completed_at.is_some());
    assert_eq!(store.list_executions("f1", 10).await.unwrap().len(), 1);
    assert!(
        store
            .get_execution(crate::exec("nope"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn concurrent_readers_never_get_the_same_message(store: Arc<dyn Store>) {
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(store.queue_send("work", &json!(i)).await.unwrap());
    }
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store.queue_read("work", 60_000, 3).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.msg_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    all.sort();
    assert_eq!(all, sent, "every message read exactly once while hidden");
}

async fn a_job_is_queued_and_finished_with_its_execution(store: Arc<dyn Store>) {
    let job = |id: &str| NewJob {
        execution: ExecutionRow {
            id: crate::exec(id),
            function_id: "default/app/add".into(),
            status: ExecutionStatus::Queued,
            input: "[1,2]".into(),
            output: None,
            error: None,
            started_at: morel_core::time::now_ms(),
            completed_at: None,
        },
        message: json!({ "execution_id": id }),
    };
    let done = |id: &str, msg_id: i64| FinishedJob {
        id: crate::exec(id),
        status: ExecutionStatus::Completed,
        output: Some("3".into()),
        error: None,
        msg_id,
    };
    // Three jobs in one call: ids in order, each message with its execution.
    let ids = store
        .enqueue_jobs("jobs", &[job("j1"), job("j2"), job("j3")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    let read = store.queue_read("jobs", 60_000, 10).await.unwrap();
    let got: Vec<_> = read.iter().map(|m| (m.msg_id, m.message.clone())).collect();
    assert_eq!(
        got,
        vec![
            (ids[0], json!({"execution_id": "j1"})),
            (ids[1], json!({"execution_id": "j2"})),
            (ids[2], json!({"execution_id": "j3"})),
        ]
    );
    // A duplicate id fails the whole transaction: no message is left without its execution.
    assert!(
        store
            .enqueue_jobs("jobs", &[job("j4"), job("j1")])
            .await
            .is_err()
    );
    assert_eq!(store.queue_depth("jobs").await.unwrap().0, 3);
    assert!(
        store
            .get_execution(crate::exec("j4"))
            .await
            .unwrap()
            .is_none()
    );

    // j2 is cancelled before it starts: it does not start, and its late result is discarded.
    assert!(store.cancel_execution(crate::exec("j2")).await.unwrap());
    let mut started = store
        .start_executions(&[
            crate::exec("j1"),
            crate::exec("j2"),
            crate::exec("j3"),
            crate::exec("nope"),
        ])
        .await
        .unwrap();
    started.sort();
    assert_eq!(started, vec![crate::exec("j1"), crate::exec("j3")]);
    assert!(
        store
            .start_executions(&[crate::exec("j1")])
            .await
            .unwrap()
            .is_empty(),
        "already running"
    );

    store
        .finish_jobs("jobs", &[done("j1", ids[0]), done("j2", ids[1])])
        .await
        .unwrap();
    let j1 = store
        .get_execution(crate::exec("j1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j1.status, j1.output.as_deref()),
        (ExecutionStatus::Completed, Some("3"))
    );
    assert!(j1.completed_at.is_some());
    assert_eq!(
        store
            .get_execution(crate::exec("j2"))
            .await
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Cancelled
    );
    assert_eq!(
        store
            .get_execution(crate::exec("j3"))
            .await
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Running
    );
    // Both messages went, j3's stays until it finishes.
    assert_eq!(store.queue_depth("jobs").await.unwrap().0, 1);
    store
        .finish_jobs("jobs", &[done("j3", ids[2])])
        .await
        .unwrap();
    assert_eq!(store.queue_depth("jobs").await.unwrap().0, 0);
}
