//! App budgets and scale (seed 004), on every backend.

use morel_store::BudgetRow;

use crate::{backends, key};

#[tokio::test]
async fn budgets_round_trip_replace_and_delete() {
    for (name, store, _dir) in backends().await {
        let app = key("web");
        store.ensure_app(&app).await.unwrap();
        assert!(store.get_budget(&app).await.unwrap().is_none(), "{name}");
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
        assert_eq!(
            store.get_budget(&app).await.unwrap(),
            Some(row.clone()),
            "{name}"
        );
        // A put replaces the whole row, unset fields included.
        row.max_instances = None;
        row.scale_min = Some(2);
        row.scale_max = Some(3);
        row.updated_at = 2;
        store.put_budget(&row).await.unwrap();
        assert_eq!(
            store.get_budget(&app).await.unwrap(),
            Some(row.clone()),
            "{name}"
        );
        // Other apps are untouched.
        assert!(
            store.get_budget(&key("other")).await.unwrap().is_none(),
            "{name}"
        );
        store.delete_budget(&app).await.unwrap();
        assert!(store.get_budget(&app).await.unwrap().is_none(), "{name}");
    }
}
