//! The scheduler of Morel on many machines (`morel server`): keeps every resource of every
//! app's active release placed on ready nodes, and the release activation that goes with it.
//!
//! Only the server holding the [`SCHEDULER_ROLE`] lease acts (a PostgreSQL advisory lock; when
//! its holder dies another server takes over). Each pass is a pure function of the store:
//! placements of lost nodes, of releases no longer active and of resources that no longer
//! exist are deleted (their agents stop them), failed ones are retried after
//! [`FAILED_RETRY`], and missing instances are placed with [`crate::cluster::place`], so a
//! resource with several instances is spread across nodes. Everything works by polling.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use morel_core::{NodeId, NodeState, PlacementState, ReleaseStatus};
use morel_manifest::Manifest;
use morel_store::{AppKey, PlacementRow, ReleaseRow, Store, StoreError};

use crate::deploy::Deployer;

/// The leadership role of the scheduler.
pub const SCHEDULER_ROLE: &str = "scheduler";

/// How long a failed placement stays before it is placed again (maybe on another node).
pub const FAILED_RETRY: Duration = Duration::from_secs(10);

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub placed: usize,
    pub removed: usize,
    /// Instances that fit nowhere (every ready node is full).
    pub unplaced: usize,
}

/// (app, release, resource): one resource of an active release.
type Slot = (AppKey, i64, String);

/// How many instances a resource wants: its `workers_min`, or the app's scale (`morel scale
/// --min`) when that is more; at least one.
fn wanted(manifest: &Manifest, scale_min: Option<i64>) -> BTreeMap<String, usize> {
    let floor = usize::try_from(scale_min.unwrap_or(0)).unwrap_or(0);
    manifest
        .resources
        .iter()
        .map(|(name, spec)| (name.clone(), (spec.workers_min as usize).max(floor).max(1)))
        .collect()
}

/// One scheduling pass (the leader runs it every interval).
pub async fn schedule_once(store: &dyn Store) -> Result<Pass, StoreError> {
    let now = morel_core::time::now_ms();
    finish_activations(store, now).await?;
    let nodes = store.list_nodes().await?;
    let ready: HashSet<&NodeId> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Ready)
        .map(|n| &n.id)
        .collect();
    let mut want: BTreeMap<Slot, usize> = BTreeMap::new();
    for app in store.list_apps().await? {
        let n = app.active_release.unwrap_or(0);
        let budget = store.get_budget(&app.key).await?;
        let scale_min = budget.as_ref().and_then(|b| b.scale_min);
        let active = match app.active_release {
            Some(n) => store.get_release(&app.key, n).await?,
            None => None,
        };
        match active
            .map(|r| serde_json::from_str::<Manifest>(&r.manifest_json))
            .transpose()
        {
            Ok(None) => {}
            Ok(Some(m)) => {
                for (resource, count) in wanted(&m, scale_min) {
                    want.insert((app.key.clone(), n, resource), count);
                }
            }
            Err(e) => {
                tracing::warn!(app = %app.key, release = n, error = %e, "unreadable manifest")
            }
        }
        // A release being activated gets its instances before it takes traffic, within the
        // app's budget: both colours count, and a release that does not fit is failed.
        let max_instances = budget.as_ref().and_then(|b| b.max_instances);
        let mut planned: usize = want
            .iter()
            .filter(|((a, _, _), _)| *a == app.key)
            .map(|(_, c)| *c)
            .sum();
        for r in store.list_releases(&app.key).await? {
            if r.status != ReleaseStatus::Starting || r.number == n {
                continue;
            }
            if let Ok(m) = serde_json::from_str::<Manifest>(&r.manifest_json) {
                let counts = wanted(&m, scale_min);
                let needs: usize = counts.values().sum();
                if let Some(max) = max_instances
                    && (planned + needs) as i64 > max
                {
                    let msg = format!(
                        "does not fit the app's budget: v{} needs {needs} instance(s) beside the \
                         {planned} running, and max_instances is {max}",
                        r.number
                    );
                    tracing::warn!(app = %app.key, release = r.number, "{msg}");
                    store
                        .set_release_status(&app.key, r.number, ReleaseStatus::Failed, Some(&msg))
                        .await?;
                    continue;
                }
                planned += needs;
                for (resource, count) in counts {
                    want.insert((app.key.clone(), r.number, resource), count);
                }
            }
        }
    }

    let mut pass = Pass::default();
    let mut used: HashMap<NodeId, i64> = HashMap::new();
    let mut have: BTreeMap<Slot, Vec<PlacementRow>> = BTreeMap::new();
    let retry_ms = i64::try_from(FAILED_RETRY.as_millis()).unwrap_or(i64::MAX);
    for p in store.list_placements(None).await? {
        let slot = (p.app.clone(), p.release, p.resource.clone());
        let stale_failure = p.state == PlacementState::Failed && p.updated_at < now - retry_ms;
        if !ready.contains(&p.node) || !want.contains_key(&slot) || stale_failure {
            tracing::info!(placement = %p.id, app = %p.app, resource = %p.resource, node = %p.node, "removing placement");
            store.delete_placement(p.id).await?;
            pass.removed += 1;
            continue;
        }
        have.entry(slot).or_default().push(p);
    }
    // Too many (the count went down): drop the newest.
    for (slot, rows) in have.iter_mut() {
        let limit = want.get(slot).copied().unwrap_or(0);
        rows.sort_by_key(|p| p.created_at);
        while rows.len() > limit {
            if let Some(p) = rows.pop() {
                store.delete_placement(p.id).await?;
                pass.removed += 1;
            }
        }
        for p in rows.iter() {
            *used.entry(p.node.clone()).or_default() += 1;
        }
    }
    for (slot, count) in &want {
        let rows = have.get(slot).map(Vec::as_slice).unwrap_or_default();
        let missing = count.saturating_sub(rows.len());
        if missing == 0 {
            continue;
        }
        let mut same: HashMap<NodeId, i64> = HashMap::new();
        for p in rows {
            *same.entry(p.node.clone()).or_default() += 1;
        }
        let picks = match crate::cluster::place(&nodes, &used, &same, missing) {
            Ok(p) => p,
            Err(e) => {
                pass.unplaced += missing - e.placed;
                crate::cluster::place(&nodes, &used, &same, e.placed).unwrap_or_default()
            }
        };
        let (app, release, resource) = slot;
        for node in picks {
            let row = PlacementRow {
                id: morel_core::InstanceId::new(),
                app: app.clone(),
                release: *release,
                resource: resource.clone(),
                node: node.clone(),
                state: PlacementState::Placed,
                endpoint: None,
                error: None,
                created_at: now,
                updated_at: now,
            };
            tracing::info!(placement = %row.id, app = %app, resource = %resource, node = %node, "placing an instance");
            store.insert_placement(&row).await?;
            *used.entry(node).or_default() += 1;
            pass.placed += 1;
        }
    }
    Ok(pass)
}

/// Runs until `stop` turns true: waits to lead [`SCHEDULER_ROLE`], then runs a pass every
/// `interval`. If the lease is lost it goes back to waiting.
pub async fn run_scheduler(
    store: Arc<dyn Store>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut lease = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if lease.is_none() {
            match store.try_lead(SCHEDULER_ROLE).await {
                Ok(Some(l)) => {
                    tracing::info!(role = SCHEDULER_ROLE, "this server now leads");
                    lease = Some(l);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "trying to lead the scheduler"),
            }
        }
        if let Some(l) = lease.as_mut() {
            if let Err(e) = l.check().await {
                tracing::warn!(error = %e, "lost the scheduler lease");
                lease = None;
            } else if let Err(e) = schedule_once(&*store).await {
                tracing::warn!(error = %e, "scheduling pass failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How long a release may wait for its instances before it fails.
pub const ACTIVATION_LIMIT: Duration = Duration::from_secs(300);

/// Completes releases being activated (`starting`): one whose every resource has a ready
/// placement becomes the app's active release (the previous one is superseded, and its
/// placements are removed by this same pass); a failed placement, or no ready instance within
/// [`ACTIVATION_LIMIT`], fails it and the previous release keeps serving. The leader does this,
/// so an activation completes even when the server that took the deploy died.
async fn finish_activations(store: &dyn Store, now: i64) -> Result<(), StoreError> {
    let limit_ms = i64::try_from(ACTIVATION_LIMIT.as_millis()).unwrap_or(i64::MAX);
    let placements = store.list_placements(None).await?;
    for app in store.list_apps().await? {
        for r in store.list_releases(&app.key).await? {
            if r.status != ReleaseStatus::Starting {
                continue;
            }
            let n = r.number;
            let failure = match serde_json::from_str::<Manifest>(&r.manifest_json) {
                Err(e) => Some(format!("unreadable manifest: {e}")),
                Ok(manifest) => {
                    let mine: Vec<&PlacementRow> = placements
                        .iter()
                        .filter(|p| p.app == app.key && p.release == n)
                        .collect();
                    let ready: HashSet<&str> = mine
                        .iter()
                        .filter(|p| p.state == PlacementState::Ready)
                        .map(|p| p.resource.as_str())
                        .collect();
                    if let Some(f) = mine.iter().find(|p| p.state == PlacementState::Failed) {
                        Some(format!(
                            "resource {} failed to start on node {}: {}",
                            f.resource,
                            f.node,
                            f.error.as_deref().unwrap_or("no reason given")
                        ))
                    } else if manifest
                        .resources
                        .keys()
                        .all(|k| ready.contains(k.as_str()))
                    {
                        let previous = store
                            .get_app(&app.key)
                            .await?
                            .and_then(|a| a.active_release);
                        store.set_active_release(&app.key, Some(n)).await?;
                        store
                            .set_release_status(&app.key, n, ReleaseStatus::Ready, None)
                            .await?;
                        if let Some(p) = previous.filter(|p| *p != n) {
                            store
                                .set_release_status(&app.key, p, ReleaseStatus::Superseded, None)
                                .await?;
                        }
                        tracing::info!(app = %app.key, release = n, "release ready on its nodes: active");
                        None
                    } else if now - r.updated_at > limit_ms {
                        Some(format!(
                            "no ready instance of every resource within {}s (are agents joined, with free capacity?)",
                            ACTIVATION_LIMIT.as_secs()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(msg) = failure {
                tracing::warn!(app = %app.key, release = n, error = %msg, "release failed");
                store
                    .set_release_status(&app.key, n, ReleaseStatus::Failed, Some(&msg))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Starts activating a release on a server whose instances run on agents (`morel server`):
/// checks its bundle and manifest and marks it `starting`; the scheduler's leader places its
/// instances next to the active release's and activates it once they are ready
/// ([`finish_activations`]). This waits for that outcome (holding the app's deploy lock) and
/// records it in the app's events.
pub(crate) async fn activate_release(deployer: Arc<Deployer>, release: ReleaseRow) {
    let app = release.app.clone();
    let n = release.number;
    let lock = deployer.lock_for(&app);
    let _guard = lock.lock().await;
    let store = &deployer.store;
    let started: Result<(), String> = async {
        if !deployer
            .ensure_bundle(&release.digest)
            .await
            .map_err(|e| e.message)?
        {
            return Err(format!(
                "bundle {} is not on this server",
                release.digest.short()
            ));
        }
        serde_json::from_str::<Manifest>(&release.manifest_json)
            .map_err(|e| format!("unreadable manifest: {e}"))?;
        store
            .set_release_status(&app, n, ReleaseStatus::Starting, None)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(msg) = started {
        tracing::warn!(app = %app, release = n, error = %msg, "release failed");
        deployer
            .logs
            .event(&app, format!("release v{n} failed: {msg}"));
        let _ = store
            .set_release_status(&app, n, ReleaseStatus::Failed, Some(&msg))
            .await;
        return;
    }
    deployer
        .logs
        .event(&app, format!("v{n}: placing instances on nodes"));
    let limit = ACTIVATION_LIMIT + Duration::from_secs(30);
    match deployer.wait_release(&app, n, limit).await {
        Ok(r) if r.status == ReleaseStatus::Ready => deployer
            .logs
            .event(&app, format!("v{n}: ready on its nodes; routing to it")),
        Ok(r) if r.status == ReleaseStatus::Failed => deployer.logs.event(
            &app,
            format!(
                "release v{n} failed: {}",
                r.error.as_deref().unwrap_or("no reason given")
            ),
        ),
        Ok(r) => {
            tracing::warn!(app = %app, release = n, status = %r.status, "activation still pending (is a scheduler leading?)")
        }
        Err(e) => {
            tracing::warn!(app = %app, release = n, error = %e.message, "waiting for an activation")
        }
    }
}
