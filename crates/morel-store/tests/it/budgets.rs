//! App budgets and scale (seed 004), on every backend.

use morel_store::{BudgetRow, Store};

use std::sync::Arc;

use crate::backend::for_each_backend;
use crate::key;

for_each_backend!(budgets_round_trip_replace_and_delete);

async fn budgets_round_trip_replace_and_delete(store: Arc<dyn Store>) {
    let app = key("web");
    store.ensure_app(&app).await.unwrap();
    assert!(store.get_budget(&app).await.unwrap().is_none());
    let mut row = BudgetRow {
        app: app.clone(),
        max_instances: Some(4),
        cpu_millis: Some(1500),
        memory_mb: Some(512),
        scale_min: None,
        scale_max: None,
        updated_at: 1,
    };
    store.put_budget(&row).await.unwrap();
    assert_eq!(store.get_budget(&app).await.unwrap(), Some(row.clone()));
    // A put replaces the whole row, unset fields included.
    row.max_instances = None;
    row.scale_min = Some(2);
    row.scale_max = Some(3);
    row.updated_at = 2;
    store.put_budget(&row).await.unwrap();
    assert_eq!(store.get_budget(&app).await.unwrap(), Some(row.clone()));
    // Other apps are untouched.
    assert!(store.get_budget(&key("other")).await.unwrap().is_none());
    store.delete_budget(&app).await.unwrap();
    assert!(store.get_budget(&app).await.unwrap().is_none());
}
