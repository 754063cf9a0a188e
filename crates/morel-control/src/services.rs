//! HTTP services' plans and budgets (seed 004 SetBudget / PublishPlan): how many instances
//! each `http` resource runs, with which limits, and whether that fits the app's budget.
//!
//! Placement never exceeds the budget: a release, a scale change or a budget change that
//! would is refused with a message saying what does not fit. A blue/green update runs the new
//! instances beside the old ones until the switch, so it needs room for both.
//! The deployer calls [`placements`] before starting a release and [`install_edge`] when it
//! switches routing; handlers call [`set_budget`], [`set_scale`] and [`instances`].

use std::collections::BTreeMap;
use std::sync::Arc;

use morel_agent::{HttpPlacement, HttpService, Limits, Running};
use morel_core::Runtime;
use morel_gateway::RouteTable;
use morel_manifest::{Manifest, ResourceSpec};
use morel_store::{AppKey, BudgetRow};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::deploy::Deployer;

/// An app's budget and scale as the API shows and takes them (`null` = not set).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetView {
    /// Most instances the whole app may run.
    pub max_instances: Option<u32>,
    /// CPU cores for the whole app.
    pub cpu: Option<f64>,
    /// MiB for the whole app.
    pub memory_mb: Option<u64>,
    /// Scale: instances each http service runs.
    pub min: Option<u32>,
    /// Scale: upper bound.
    pub max: Option<u32>,
}

impl BudgetView {
    fn from_row(r: &BudgetRow) -> Self {
        BudgetView {
            max_instances: r.max_instances.map(|v| v as u32),
            cpu: r.cpu_millis.map(|m| m as f64 / 1000.0),
            memory_mb: r.memory_mb.map(|v| v as u64),
            min: r.scale_min.map(|v| v as u32),
            max: r.scale_max.map(|v| v as u32),
        }
    }

    fn to_row(&self, app: &AppKey) -> BudgetRow {
        BudgetRow {
            app: app.clone(),
            max_instances: self.max_instances.map(i64::from),
            cpu_millis: self.cpu.map(|c| (c * 1000.0).round() as i64),
            memory_mb: self.memory_mb.map(|m| m as i64),
            scale_min: self.min.map(i64::from),
            scale_max: self.max.map(i64::from),
            updated_at: morel_core::time::now_ms(),
        }
    }
}

/// One instance as `morel ps` shows it (named `InstanceDetail` in the API document, beside
/// the shorter `InstanceView` of `GET /api/apps/{app}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InstanceDetail)]
pub struct InstanceView {
    pub id: String,
    pub resource: String,
    pub node: String,
    pub port: Option<i64>,
    pub pid: Option<i64>,
    pub release: String,
    pub digest: String,
    pub state: String,
    pub restarts: i64,
    /// Seconds since the current process became ready (`null` unless ready).
    pub uptime_s: Option<i64>,
    pub last_error: Option<String>,
    /// Which limits are in force and how (cgroup v2 or rlimit); `null` for function workers.
    pub limits: Option<String>,
    /// Ready but its endpoint's lease ran out (no heartbeat answered within the TTL): the
    /// edge does not route to it until a heartbeat succeeds again.
    pub lease_expired: bool,
    /// When the ready process last answered a heartbeat (ms since the epoch); `null` unless
    /// ready on a running service.
    pub last_heartbeat_at: Option<i64>,
}

pub async fn budget(d: &Deployer, app: &AppKey) -> Result<BudgetView, ApiError> {
    Ok(d.store
        .get_budget(app)
        .await?
        .as_ref()
        .map(BudgetView::from_row)
        .unwrap_or_default())
}

fn http_services(running: &[Running]) -> Vec<Arc<HttpService>> {
    running
        .iter()
        .filter_map(|r| match r {
            Running::Http(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

/// What one set of instances needs.
struct Need {
    what: String,
    instances: usize,
    limits: Limits,
}

/// Checks `needs` against the budget; the error says what does not fit.
fn check_fit(b: &BudgetView, needs: &[Need]) -> Result<(), String> {
    let total: usize = needs.iter().map(|n| n.instances).sum();
    let list = || {
        needs
            .iter()
            .map(|n| format!("{} × {}", n.instances, n.what))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if let Some(max) = b.max_instances
        && total > max as usize
    {
        return Err(format!(
            "needs {total} instances ({}) but the budget allows at most {max}",
            list()
        ));
    }
    if let Some(mem) = b.memory_mb {
        let mut sum = 0u64;
        for n in needs {
            let Some(m) = n.limits.memory_mb else {
                return Err(format!(
                    "{} has no memory limit, so it cannot fit a memory budget of {mem} MiB (set memory_mb)",
                    n.what
                ));
            };
            sum += m * n.instances as u64;
        }
        if sum > mem {
            return Err(format!(
                "needs {sum} MiB of memory ({}) but the budget allows {mem} MiB",
                list()
            ));
        }
    }
    if let Some(cpu) = b.cpu {
        let mut sum = 0f64;
        for n in needs {
            sum += n.limits.cpu.unwrap_or(0.0) * n.instances as f64;
        }
        if sum > cpu + 1e-9 {
            return Err(format!(
                "needs {sum} cpu ({}) but the budget allows {cpu}",
                list()
            ));
        }
    }
    Ok(())
}

/// Instances and limits of one http resource under the app's scale and budget: `min`
/// instances (else the manifest's `workers_min`); limits from the manifest, else an equal
/// share of the budget.
fn placement(res: &ResourceSpec, b: &BudgetView) -> HttpPlacement {
    let base = HttpPlacement::from_spec(res);
    let instances = b.min.map(|m| m.max(1) as usize).unwrap_or(base.instances);
    let share = b.max_instances.unwrap_or(instances as u32).max(1);
    HttpPlacement {
        instances,
        limits: Limits {
            memory_mb: base
                .limits
                .memory_mb
                .or(b.memory_mb.map(|m| m / u64::from(share))),
            cpu: base.limits.cpu.or(b.cpu.map(|c| c / f64::from(share))),
        },
    }
}

/// Plans the http resources of a release about to start. `running` are the app's active
/// resources; those in `keep` stay as they are, the others run until the switch. Errors when
/// the plan cannot fit the budget.
pub async fn placements(
    d: &Deployer,
    app: &AppKey,
    manifest: &Manifest,
    running: &[Running],
    keep: &std::collections::BTreeSet<String>,
) -> Result<BTreeMap<String, HttpPlacement>, String> {
    let b = budget(d, app).await.map_err(|e| e.message)?;
    // No resource, of any runtime, may ask for more than the whole budget.
    for (name, res) in &manifest.resources {
        if let (Some(want), Some(mem)) = (res.memory_mb, b.memory_mb)
            && want > mem
        {
            return Err(format!(
                "resources.{name}.memory_mb is {want} MiB, more than the memory budget of {app} ({mem} MiB)"
            ));
        }
        if let (Some(want), Some(cpu)) = (res.cpu, b.cpu)
            && want > cpu + 1e-9
        {
            return Err(format!(
                "resources.{name}.cpu is {want}, more than the cpu budget of {app} ({cpu})"
            ));
        }
    }
    let mut out = BTreeMap::new();
    let mut needs = Vec::new();
    for (name, res) in &manifest.resources {
        if res.runtime != Runtime::Http {
            continue;
        }
        let p = placement(res, &b);
        if !keep.contains(name) {
            needs.push(Need {
                what: format!("{name} (new)"),
                instances: p.instances,
                limits: p.limits,
            });
        }
        out.insert(name.clone(), p);
    }
    for svc in http_services(running) {
        needs.push(Need {
            what: if keep.contains(&svc.resource) {
                format!("{} (kept)", svc.resource)
            } else {
                format!("{} (running until the switch)", svc.resource)
            },
            instances: svc.instance_count(),
            limits: svc.limits(),
        });
    }
    if !out.is_empty() {
        check_fit(&b, &needs)
            .map_err(|e| format!("the plan does not fit the budget of {app}: {e}"))?;
    }
    Ok(out)
}

/// Points the edge at the app's http service (the one named like the app, else the first by
/// name), or removes it when the release has none. Called after the function routes switch.
pub fn install_edge(routes: &RouteTable, app: &AppKey, running: &[Running]) {
    let mut services = http_services(running);
    services.sort_by(|a, b| a.resource.cmp(&b.resource));
    let chosen = services
        .iter()
        .find(|s| s.resource == app.name.as_str())
        .or(services.first());
    match chosen {
        Some(svc) => {
            routes
                .edge()
                .install(app.namespace.as_str(), app.name.as_str(), svc.clone());
        }
        None => {
            routes
                .edge()
                .remove(app.namespace.as_str(), app.name.as_str());
        }
    }
}

fn validate(v: &BudgetView) -> Result<(), ApiError> {
    if v.max_instances == Some(0) {
        return Err(ApiError::bad_request("max_instances must be at least 1"));
    }
    if v.cpu.is_some_and(|c| !c.is_finite() || c <= 0.0) {
        return Err(ApiError::bad_request(
            "cpu must be a positive number of cores",
        ));
    }
    if v.memory_mb == Some(0) {
        return Err(ApiError::bad_request("memory_mb must be at least 1"));
    }
    if v.max == Some(0) {
        return Err(ApiError::bad_request("max must be at least 1"));
    }
    if let (Some(lo), Some(hi)) = (v.min, v.max)
        && lo > hi
    {
        return Err(ApiError::bad_request(format!(
            "min {lo} is greater than max {hi}"
        )));
    }
    Ok(())
}

/// What the app's running http services need with each resized to `scale_min` (if given).
fn running_needs(running: &[Running], scale_min: Option<u32>) -> Vec<Need> {
    http_services(running)
        .iter()
        .map(|s| Need {
            what: s.resource.clone(),
            instances: scale_min
                .map(|m| m.max(1) as usize)
                .unwrap_or_else(|| s.instance_count()),
            limits: s.limits(),
        })
        .collect()
}

/// Sets the app's budget; refused when what runs now would not fit it.
pub async fn set_budget(
    d: &Deployer,
    app: &AppKey,
    max_instances: Option<u32>,
    cpu: Option<f64>,
    memory_mb: Option<u64>,
) -> Result<BudgetView, ApiError> {
    let _guard = d.app_lock(app).await;
    d.store.ensure_app(app).await?;
    let mut v = budget(d, app).await?;
    v.max_instances = max_instances;
    v.cpu = cpu;
    v.memory_mb = memory_mb;
    validate(&v)?;
    if let Some(min) = v.min
        && let Some(max) = v.max_instances
        && min > max
    {
        return Err(ApiError::bad_request(format!(
            "refused: the app's scale asks for at least {min} instances, more than max_instances {max}"
        )));
    }
    check_fit(&v, &running_needs(&d.active_pools(app), None))
        .map_err(|e| ApiError::bad_request(format!("refused: what {app} runs now {e}")))?;
    d.store.put_budget(&v.to_row(app)).await?;
    d.logs.event(app, format!("budget set: {}", describe(&v)));
    Ok(v)
}

/// Sets the app's scale and resizes its running http services to `min`; refused when that
/// does not fit the budget.
pub async fn set_scale(
    d: &Deployer,
    app: &AppKey,
    min: u32,
    max: u32,
) -> Result<BudgetView, ApiError> {
    let _guard = d.app_lock(app).await;
    d.store.ensure_app(app).await?;
    let mut v = budget(d, app).await?;
    v.min = Some(min);
    v.max = Some(max);
    validate(&v)?;
    if min == 0 {
        return Err(ApiError::bad_request(
            "min must be at least 1 (http services do not scale to zero yet)",
        ));
    }
    if let Some(cap) = v.max_instances
        && min > cap
    {
        return Err(ApiError::bad_request(format!(
            "refused: min {min} instances exceeds the budget's max_instances {cap}"
        )));
    }
    let running = d.active_pools(app);
    check_fit(&v, &running_needs(&running, Some(min)))
        .map_err(|e| ApiError::bad_request(format!("refused: scaling {app} {e}")))?;
    d.store.put_budget(&v.to_row(app)).await?;
    for svc in http_services(&running) {
        svc.resize(min as usize);
    }
    d.logs.event(app, format!("scale set: {}", describe(&v)));
    Ok(v)
}

fn describe(v: &BudgetView) -> String {
    let f = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    format!(
        "max_instances {}, cpu {}, memory {}, min {}, max {}",
        f(v.max_instances.map(|x| x.to_string())),
        f(v.cpu.map(|x| x.to_string())),
        f(v.memory_mb.map(|x| format!("{x} MiB"))),
        f(v.min.map(|x| x.to_string())),
        f(v.max.map(|x| x.to_string())),
    )
}

/// The app's instances as persisted, with the limits in force from the running services.
pub async fn instances(d: &Deployer, app: &AppKey) -> Result<Vec<InstanceView>, ApiError> {
    if d.store.get_app(app).await?.is_none() {
        return Err(ApiError::not_found(format!("app {app} not found")));
    }
    let services = http_services(&d.active_pools(app));
    let limits: BTreeMap<(String, i64), String> = services
        .iter()
        .map(|s| ((s.resource.clone(), s.release), s.limits_note.clone()))
        .collect();
    // The lease lives in memory on the agent: take it from the running services.
    let live: BTreeMap<String, morel_agent::InstanceStatus> = services
        .iter()
        .flat_map(|s| s.statuses())
        .map(|st| (st.id.to_string(), st))
        .collect();
    let now = morel_core::time::now_ms();
    let mut rows = d.store.list_instances(Some(app)).await?;
    rows.sort_by(|a, b| {
        (a.resource.as_str(), a.release, a.started_at).cmp(&(
            b.resource.as_str(),
            b.release,
            b.started_at,
        ))
    });
    Ok(rows
        .into_iter()
        .map(|r| InstanceView {
            lease_expired: live
                .get(&r.id.to_string())
                .is_some_and(|st| st.lease_expired),
            last_heartbeat_at: live.get(&r.id.to_string()).and_then(|st| st.last_heartbeat),
            id: r.id.to_string(),
            limits: limits.get(&(r.resource.clone(), r.release)).cloned(),
            resource: r.resource,
            node: r.node,
            port: r.port,
            pid: r.pid,
            release: format!("v{}", r.release),
            digest: r.digest.to_string(),
            state: r.state.as_str().to_owned(),
            restarts: r.restarts,
            uptime_s: (r.state == morel_core::InstanceState::Ready)
                .then(|| (now - r.started_at).max(0) / 1000),
            last_error: r.last_error,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(instances: usize, mem: Option<u64>) -> Need {
        Need {
            what: "web".into(),
            instances,
            limits: Limits {
                memory_mb: mem,
                cpu: None,
            },
        }
    }

    #[test]
    fn fit_counts_instances_and_memory() {
        let b = BudgetView {
            max_instances: Some(4),
            memory_mb: Some(512),
            ..Default::default()
        };
        assert!(check_fit(&b, &[need(2, Some(128)), need(2, Some(128))]).is_ok());
        let e = check_fit(&b, &[need(3, Some(128)), need(2, Some(64))]).unwrap_err();
        assert!(
            e.contains("needs 5 instances") && e.contains("at most 4"),
            "{e}"
        );
        let e = check_fit(&b, &[need(2, Some(300))]).unwrap_err();
        assert!(e.contains("600 MiB") && e.contains("512 MiB"), "{e}");
        let e = check_fit(&b, &[need(1, None)]).unwrap_err();
        assert!(e.contains("no memory limit"), "{e}");
        assert!(check_fit(&BudgetView::default(), &[need(100, None)]).is_ok());
    }
}
