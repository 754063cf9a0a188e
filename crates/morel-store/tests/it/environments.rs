//! Environments, deploy requests and their steps, secrets and certificates.

use morel_store::*;

use std::sync::Arc;

use crate::backend::for_each_backend;
use crate::key;

for_each_backend!(
    environments_secrets_and_certificates_round_trip_and_delete_together,
    deploy_steps_are_recorded_once_in_order,
    set_vt_renews_a_lease
);

fn env_row(app: &AppKey, name: &str, kind: EnvironmentKind) -> EnvironmentRow {
    EnvironmentRow {
        app: app.clone(),
        name: name.into(),
        kind,
        branch: Some(format!("branch-of-{name}")),
        repo_url: Some("file:///repo".into()),
        status: EnvironmentStatus::Creating,
        url: None,
        error: None,
        created_at: 1,
        updated_at: 1,
    }
}

async fn environments_secrets_and_certificates_round_trip_and_delete_together(
    store: Arc<dyn Store>,
) {
    let app = key("web");
    store
        .upsert_environment(&env_row(&app, "production", EnvironmentKind::Production))
        .await
        .unwrap();
    let mut preview = env_row(&app, "feature-x", EnvironmentKind::Preview);
    store.upsert_environment(&preview).await.unwrap();
    preview.status = EnvironmentStatus::Ready;
    preview.url = Some("http://x".into());
    store.upsert_environment(&preview).await.unwrap();
    assert_eq!(
        store.get_environment(&app, "feature-x").await.unwrap(),
        Some(preview.clone())
    );
    let names: Vec<String> = store
        .list_environments(Some(&app))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["production", "feature-x"], "production first");
    for env in ["production", "feature-x"] {
        store
            .put_secret(&SecretRow {
                app: app.clone(),
                env: env.into(),
                name: "API_KEY".into(),
                sealed: format!("sealed-{env}"),
                updated_at: 5,
            })
            .await
            .unwrap();
        store
            .put_certificate(&CertificateRow {
                app: app.clone(),
                env: env.into(),
                cert_pem: "PEM".into(),
                key_sealed: "sealed".into(),
                updated_at: 5,
            })
            .await
            .unwrap();
    }
    assert!(store.delete_environment(&app, "feature-x").await.unwrap());
    assert!(!store.delete_environment(&app, "feature-x").await.unwrap());
    assert!(
        store
            .list_secrets(&app, "feature-x")
            .await
            .unwrap()
            .is_empty()
    );
    let certs = store.list_certificates().await.unwrap();
    assert_eq!(certs.len(), 1, "only production's certificate is left");
    assert_eq!(
        store.list_secrets(&app, "production").await.unwrap()[0].sealed,
        "sealed-production"
    );
    assert!(
        store
            .delete_secret(&app, "production", "API_KEY")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_secret(&app, "production", "API_KEY")
            .await
            .unwrap()
    );
}

async fn deploy_steps_are_recorded_once_in_order(store: Arc<dyn Store>) {
    let mut d = DeployRow {
        id: crate::deploy("d1"),
        app: key("web"),
        repo_url: "file:///repo".into(),
        branch: Some("main".into()),
        main_branch: None,
        env: None,
        digest: None,
        release: None,
        status: DeployStatus::Queued,
        error: None,
        attempts: 0,
        created_at: 1,
        updated_at: 1,
    };
    store.create_deploy(&d).await.unwrap();
    d.env = Some("production".into());
    d.release = Some(3);
    d.status = DeployStatus::Running;
    d.attempts = 1;
    store.update_deploy(&d).await.unwrap();
    let got = store
        .get_deploy(crate::deploy("d1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.env, got.release, got.status, got.attempts),
        (d.env.clone(), Some(3), DeployStatus::Running, 1)
    );
    assert!(
        store
            .record_deploy_step(crate::deploy("d1"), "resolve", "a")
            .await
            .unwrap()
    );
    assert!(
        store
            .record_deploy_step(crate::deploy("d1"), "build", "b")
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_deploy_step(crate::deploy("d1"), "resolve", "again")
            .await
            .unwrap(),
        "a step is recorded once"
    );
    let steps = store.list_deploy_steps(crate::deploy("d1")).await.unwrap();
    let got: Vec<(i64, &str, &str)> = steps
        .iter()
        .map(|s| (s.seq, s.step.as_str(), s.detail.as_str()))
        .collect();
    assert_eq!(got, [(1, "resolve", "a"), (2, "build", "b")]);
}

async fn set_vt_renews_a_lease(store: Arc<dyn Store>) {
    let id = store
        .queue_send("q", &serde_json::json!({"a": 1}))
        .await
        .unwrap();
    // Read with an already expired lease, then renew it: the message is hidden again.
    assert_eq!(store.queue_read("q", 0, 1).await.unwrap().len(), 1);
    assert!(store.queue_set_vt("q", id, 60_000).await.unwrap());
    assert!(store.queue_read("q", 0, 1).await.unwrap().is_empty());
    assert!(!store.queue_set_vt("q", id + 100, 1).await.unwrap());
}
