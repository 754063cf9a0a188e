//! Seed 000's API, so that its clients (notably the `@metacall/deploy` CLI) work against
//! Morel unchanged: package upload, repository clone, deploy create/delete, inspect, and the
//! account/billing routes that client calls. Auth is the same bearer token as everywhere
//! (the client sends it as `Authorization: jwt <token>`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use morel_bundle::ExtractLimits;
use morel_core::ReleaseStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, app_key};
use crate::extract::ApiJson;
use crate::{ApiError, git};

/// How long `deploy/create` waits for the release to become ready before answering.
const DEPLOY_WAIT: Duration = Duration::from_secs(600);

#[utoipa::path(
    get,
    path = "/api/readiness",
    tag = "compat",
    summary = "Readiness probe (no token needed)",
    responses(
        (status = 200, description = "ok: every active release is restored", body = serde_json::Value),
        (status = 503, description = "still restoring apps after a restart (Retry-After)", body = serde_json::Value),
    ),
)]
pub async fn readiness(State(st): State<AppState>) -> Response {
    let restoring = st.deployer.routes.restoring();
    if restoring > 0 {
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "restoring", "apps": restoring })),
        )
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return resp;
    }
    Json(json!({ "status": "ready" })).into_response()
}

/// Reached only with a valid token (the auth layer answers 401 otherwise).
#[utoipa::path(
    get,
    path = "/validate",
    tag = "compat",
    summary = "Seed 000: check the token",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn validate() -> Json<Value> {
    Json(json!(true))
}

#[utoipa::path(
    get,
    path = "/api/account/deploy-enabled",
    tag = "compat",
    summary = "Seed 000: whether deploys are enabled",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn deploy_enabled() -> Json<Value> {
    Json(json!(true))
}

/// Admin tokens do not expire, so a refresh returns the same token (as raw text, which is what
/// the client expects). Only a caller that already holds the token gets here.
#[utoipa::path(
    get,
    path = "/api/account/refresh-token",
    tag = "compat",
    summary = "Seed 000: the same token, as text",
    responses(
        (status = 200, description = "the token", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn refresh_token(req: axum::extract::Request) -> Response {
    // The token auth let through is the caller's own.
    crate::auth::presented(&req)
        .unwrap_or_default()
        .to_owned()
        .into_response()
}

/// Exactly one plan: the client sends `plans[0]` regardless of `--plan`.
#[utoipa::path(
    get,
    path = "/api/billing/list-subscriptions",
    tag = "compat",
    summary = "Seed 000: plans",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_subscriptions() -> Json<Value> {
    Json(json!(["Essential"]))
}

#[utoipa::path(
    get,
    path = "/api/billing/list-subscriptions-deploys",
    tag = "compat",
    summary = "Seed 000: deployments by plan",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_subscriptions_deploys(
    State(st): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let apps = st.deployer.store.list_apps().await?;
    Ok(Json(Value::Array(
        apps.iter()
            .map(|a| json!({ "deploy": a.key.name.as_str(), "plan": "Essential" }))
            .collect(),
    )))
}

/// `POST /api/package/create`: multipart with `id`, `jsons`, `runners` and the zip (any field
/// name with a filename). The zip is unsigned: it is checked like any untrusted archive,
/// built, packed and signed with the server's key.
#[utoipa::path(
    post,
    path = "/api/package/create",
    tag = "compat",
    summary = "Seed 000: upload a package (multipart: id, jsons, runners, the zip)",
    request_body(content = String, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "stored", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 413, description = "too large", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn package_create(
    State(st): State<AppState>,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    let mut id = None;
    let mut jsons = None;
    let mut zip = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let has_file = field.file_name().is_some();
        let data = field.bytes().await.map_err(|e| {
            if e.to_string().contains("limit") {
                ApiError::too_large(format!("upload too large: {e}"))
            } else {
                ApiError::bad_request(format!("bad multipart field {name:?}: {e}"))
            }
        })?;
        match name.as_str() {
            "id" => id = Some(String::from_utf8_lossy(&data).trim().to_owned()),
            "jsons" => jsons = Some(String::from_utf8_lossy(&data).into_owned()),
            "runners" | "type" => {}
            _ if has_file || name == "raw" || name == "file" => zip = Some(data),
            _ => {}
        }
    }
    let id = id.ok_or_else(|| ApiError::bad_request("missing field `id` (the app name)"))?;
    let key = app_key(&id.to_lowercase())?;
    let zip = zip.ok_or_else(|| {
        ApiError::bad_request("missing the zip file field (send it as `raw` or `file`)")
    })?;
    let files = tokio::task::spawn_blocking(move || {
        morel_bundle::read_untrusted_zip(&zip, &ExtractLimits::default())
    })
    .await
    .map_err(|e| ApiError::internal("reading an upload", &e))?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let dir =
        tempfile::tempdir().map_err(|e| ApiError::internal("creating a scratch directory", &e))?;
    for (path, bytes, exec) in files {
        let dest = dir.path().join(&path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ApiError::internal("writing an upload", &e))?;
        }
        std::fs::write(&dest, bytes).map_err(|e| ApiError::internal("writing an upload", &e))?;
        if exec {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755));
        }
    }
    write_jsons(dir.path(), jsons.as_deref())?;
    let (digest, manifest) = st
        .deployer
        .pack_and_store(dir.path(), key.name.as_str())
        .await?;
    st.deployer
        .store
        .put_package(&morel_store::PackageRow {
            app: key.clone(),
            digest: digest.clone(),
            created_at: morel_core::time::now_ms(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": key.name.as_str(), "digest": digest, "functions": manifest.function_registry.keys().collect::<Vec<_>>() }))).into_response())
}

/// The client's `jsons` field: metacall descriptions to write beside the code when the zip has none.
fn write_jsons(dir: &std::path::Path, jsons: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = jsons.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let list: Vec<Value> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("field `jsons` is not a JSON array: {e}")))?;
    for (i, j) in list.iter().enumerate() {
        let path = dir.join(format!("metacall-upload-{i}.json"));
        std::fs::write(&path, j.to_string())
            .map_err(|e| ApiError::internal("writing jsons", &e))?;
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BranchList {
    url: String,
}

#[utoipa::path(
    post,
    path = "/api/repository/branchlist",
    tag = "compat",
    summary = "Seed 000: branches of a git repository",
    request_body = BranchList,
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn branch_list(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<BranchList>,
) -> Result<Json<Value>, ApiError> {
    let branches = git::branches(&st.deployer.cfg.git, &req.url).await?;
    Ok(Json(json!({ "branches": branches })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct FileList {
    url: String,
    /// Default `main`.
    #[serde(default)]
    branch: Option<String>,
}

/// `POST /api/repository/filelist`: the client reads it to find the repository's runners
/// (`package.json`, `requirements.txt`, …) before it asks for the deploy.
#[utoipa::path(
    post,
    path = "/api/repository/filelist",
    tag = "compat",
    summary = "Seed 000: the files of a branch of a git repository",
    request_body = FileList,
    responses(
        (status = 200, description = "`{files: [path, …]}`, relative to the repository's root", body = serde_json::Value),
        (status = 400, description = "bad input, or git's reason (no such repository or branch), named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn file_list(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<FileList>,
) -> Result<Json<Value>, ApiError> {
    let branch = req.branch.unwrap_or_else(|| "main".into());
    let files = git::files(&st.deployer.cfg.git, &req.url, &branch).await?;
    Ok(Json(json!({ "files": files })))
}

/// The app a repository is deployed as, named like MetaCall FaaS names it: the last two
/// segments of the URL's path, `owner-repo`, lowercased and without `.git`
/// (`https://github.com/Foo/Bar.git` → `foo-bar`), made a valid app name.
fn repository_app_name(url: &str) -> Option<morel_core::AppName> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    // An https or ssh URL's path starts after its host; a file URL's is all of the rest.
    let path = if url.starts_with("file://") {
        path
    } else {
        path.split_once('/').map_or("", |(_, p)| p)
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let tail = segments.split_off(segments.len().saturating_sub(2));
    morel_core::AppName::slugify(&tail.join("-").to_lowercase())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RepositoryAdd {
    url: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    jsons: Option<Value>,
    #[serde(default)]
    id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/repository/add",
    tag = "compat",
    summary = "Seed 000: build a package from a git repository",
    request_body = RepositoryAdd,
    responses(
        (status = 201, description = "stored", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn repository_add(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RepositoryAdd>,
) -> Result<Response, ApiError> {
    git::check_url(&req.url)?;
    let branch = req.branch.unwrap_or_else(|| "main".into());
    git::check_branch(&branch)?;
    let name = match &req.id {
        Some(id) => morel_core::AppName::slugify(id),
        None => repository_app_name(&req.url),
    }
    .ok_or_else(|| {
        ApiError::bad_request(format!("cannot derive an app name from {:?}", req.url))
    })?;
    let key = morel_store::AppKey::in_default(name);
    let dir =
        tempfile::tempdir().map_err(|e| ApiError::internal("creating a scratch directory", &e))?;
    let checkout = dir.path().join("repo");
    git::clone(&st.deployer.cfg.git, &req.url, &branch, &checkout).await?;
    let jsons = req.jsons.map(|j| j.to_string());
    write_jsons(&checkout, jsons.as_deref())?;
    let (digest, _) = st
        .deployer
        .pack_and_store(&checkout, key.name.as_str())
        .await?;
    st.deployer
        .store
        .put_package(&morel_store::PackageRow {
            app: key.clone(),
            digest,
            created_at: morel_core::time::now_ms(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": key.name.as_str() })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeployCreate {
    suffix: String,
    #[serde(default)]
    env: Vec<EnvVar>,
}

/// `POST /api/deploy/create`: deploys the uploaded package (or redeploys the active bundle)
/// as a new release and answers once it is ready, as seed 000 does.
#[utoipa::path(
    post,
    path = "/api/deploy/create",
    tag = "compat",
    summary = "Seed 000: deploy the uploaded package and wait until it is ready",
    request_body = DeployCreate,
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn deploy_create(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<DeployCreate>,
) -> Result<Response, ApiError> {
    let key = app_key(&req.suffix.to_lowercase())?;
    let store = &st.deployer.store;
    let digest = match store.get_package(&key).await? {
        Some(p) => p.digest,
        None => {
            let app = store.get_app(&key).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "no package or repository named {:?} was uploaded",
                    req.suffix
                ))
            })?;
            let n = app.active_release.ok_or_else(|| {
                ApiError::not_found(format!("app {:?} has nothing to deploy", req.suffix))
            })?;
            store
                .get_release(&key, n)
                .await?
                .ok_or_else(|| ApiError::not_found("release not found"))?
                .digest
        }
    };
    // The package's own `.env` first (a repository's is the only way its variables reach
    // it: the client sends none for a repository), then the request's, which win.
    let mut config = package_dotenv(&st, &digest).await?;
    for e in req.env {
        if e.name.is_empty() || e.name.contains('=') || e.name.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "env: invalid variable name {:?}",
                e.name
            )));
        }
        config.insert(e.name, e.value);
    }
    let release = st
        .deployer
        .create_release(
            &key,
            Some(&digest),
            "production",
            crate::deploy::ConfigChange::Replace(config),
        )
        .await?;
    let done = st
        .deployer
        .wait_release(&key, release.number, DEPLOY_WAIT)
        .await?;
    match done.status {
        ReleaseStatus::Ready => {
            store.delete_package(&key).await?;
            Ok(Json(json!({ "prefix": key.namespace.as_str(), "suffix": key.name.as_str(), "version": format!("v{}", done.number) })).into_response())
        }
        ReleaseStatus::Failed => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DeployFailed",
            done.error.unwrap_or_else(|| "deploy failed".into()),
        )),
        other => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "DeployTimeout",
            format!("release v{} is still {other}", done.number),
        )),
    }
}

/// Largest `.env` read from a package.
const DOTENV_MAX: u64 = 64 << 10;

/// The variables of the `.env` at the root of the bundle `digest` (none if it has no `.env`),
/// as MetaCall FaaS reads an app's `.env` when it starts it again. Values are never logged nor
/// put in an error.
async fn package_dotenv(
    st: &AppState,
    digest: &morel_core::Digest,
) -> Result<BTreeMap<String, String>, ApiError> {
    let (bundle, _) = st
        .deployer
        .blobs
        .read(digest)
        .await
        .map_err(|e| ApiError::internal("reading a package", &e))?;
    let text = match morel_bundle::read_entry(&bundle, ".env", DOTENV_MAX) {
        Ok(bytes) => bytes,
        Err(morel_bundle::BundleError::MissingEntry { .. }) => return Ok(BTreeMap::new()),
        Err(e) => return Err(ApiError::bad_request(format!("the package's .env: {e}"))),
    };
    let text = String::from_utf8(text)
        .map_err(|_| ApiError::bad_request("the package's .env is not UTF-8"))?;
    parse_dotenv(&text).map_err(|e| ApiError::bad_request(format!("the package's .env: {e}")))
}

/// Parses a `.env` the way the `dotenv` package (which the `@metacall/deploy` client uses)
/// reads the common cases: `KEY=value` lines, blank lines and `#` comments, an optional
/// `export `, values in single, double (with `\n` escapes) or back quotes, and ` #` comments
/// after an unquoted value. A later line wins. Anything else (a line without `=`, a bad name,
/// an unclosed quote) is an error naming the line, never its value: a variable silently
/// dropped would only show up as a wrong answer of a function.
fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n} is not KEY=value"))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(format!("line {n}: invalid variable name {key:?}"));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'' | '`')) => {
                let rest = &value[1..];
                let end = rest.find(q).ok_or_else(|| {
                    format!("line {n}: the quoted value of {key} does not end on its line")
                })?;
                let inner = &rest[..end];
                if q == '"' {
                    inner.replace("\\n", "\n").replace("\\r", "\r")
                } else {
                    inner.to_owned()
                }
            }
            _ => value
                .split_once(" #")
                .map_or(value, |(v, _)| v)
                .trim_end()
                .to_owned(),
        };
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeployDelete {
    suffix: String,
    #[serde(default)]
    prefix: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/deploy/delete",
    tag = "compat",
    summary = "Seed 000: delete a deployment",
    request_body = DeployDelete,
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn deploy_delete(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<DeployDelete>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&req.suffix)?;
    if let Some(p) = &req.prefix
        && p != key.namespace.as_str()
    {
        return Err(ApiError::not_found(format!(
            "no deployment {p}/{}",
            req.suffix
        )));
    }
    if !st.deployer.delete_app(&key).await? {
        return Err(ApiError::not_found(format!(
            "no deployment named {:?}",
            req.suffix
        )));
    }
    Ok(Json(json!("Deploy Delete Succeed")))
}

/// `GET /api/inspect`: deployments with their functions and signatures, in seed 000's shape.
#[utoipa::path(
    get,
    path = "/api/inspect",
    tag = "compat",
    summary = "Seed 000: deployments with their functions",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn inspect(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = &st.deployer.store;
    let mut out = Vec::new();
    for app in store.list_apps().await? {
        let releases = store.list_releases(&app.key).await?;
        let latest = releases.last();
        let status = match (app.active_release, latest.map(|r| r.status)) {
            (_, Some(s)) if !s.is_terminal() => "create",
            (Some(_), _) => "ready",
            _ => "fail",
        };
        let version = app.active_release.or(latest.map(|r| r.number)).unwrap_or(1);
        let functions = store.list_functions(&app.key).await?;
        let manifest: Option<morel_manifest::Manifest> = releases
            .iter()
            .find(|r| Some(r.number) == app.active_release)
            .and_then(|r| serde_json::from_str(&r.manifest_json).ok());
        let mut packages: BTreeMap<&str, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
        for f in &functions {
            let (lang, file) = match manifest.as_ref().and_then(|m| m.resources.get(&f.resource)) {
                Some(res) => (
                    if res.runtime == morel_core::Runtime::Node {
                        "node"
                    } else {
                        "py"
                    },
                    res.functions
                        .iter()
                        .find(|d| d.name == f.name)
                        .map(|d| d.file.clone())
                        .unwrap_or_default(),
                ),
                None => ("py", String::new()),
            };
            let args: Vec<Value> = f
                .params
                .iter()
                .map(|p| json!({ "name": p, "type": { "name": "", "id": 18 } }))
                .collect();
            packages
                .entry(lang)
                .or_default()
                .entry(file)
                .or_default()
                .push(json!({
                    "name": f.name, "async": f.is_async,
                    "signature": { "ret": { "type": { "name": "", "id": 18 } }, "args": args },
                }));
        }
        let packages: BTreeMap<&str, Vec<Value>> = packages
            .into_iter()
            .map(|(lang, files)| {
                let entries = files.into_iter().map(|(file, funcs)| json!({ "name": file, "scope": { "name": "global_namespace", "classes": [], "objects": [], "funcs": funcs } })).collect();
                (lang, entries)
            })
            .collect();
        out.push(json!({
            "status": status,
            "prefix": app.key.namespace.as_str(),
            "suffix": app.key.name.as_str(),
            "version": format!("v{version}"),
            "packages": packages,
            "ports": [],
        }));
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeployLogs {
    suffix: String,
}

#[utoipa::path(
    post,
    path = "/api/deploy/logs",
    tag = "compat",
    summary = "Seed 000: a deployment's logs as one string",
    request_body = DeployLogs,
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn deploy_logs(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<DeployLogs>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&req.suffix)?;
    let rows = st.deployer.store.read_logs(&key, 0, 0, 10_000).await?;
    let text: Vec<&str> = rows.iter().map(|l| l.line.as_str()).collect();
    Ok(Json(json!(text.join("\n"))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{parse_dotenv, repository_app_name};

    #[test]
    fn dotenv_files_are_read_like_the_dotenv_package() {
        let text = "# settings\n\nPLAIN=some value\nexport EXPORTED=yes\n  SPACED  =  padded  \nEMPTY=\nWITH_EQ=a=b=c\nCOMMENTED=value # a comment\nHASH=a#b\nDOUBLE=\"two\\nlines # kept\"\nSINGLE='no \\n escape'\nBACK=`back`\nDOTTED.NAME-X=1\nPLAIN=last wins\n";
        let got = parse_dotenv(text).unwrap();
        let want: Vec<(&str, &str)> = vec![
            ("BACK", "back"),
            ("COMMENTED", "value"),
            ("DOTTED.NAME-X", "1"),
            ("DOUBLE", "two\nlines # kept"),
            ("EMPTY", ""),
            ("EXPORTED", "yes"),
            ("HASH", "a#b"),
            ("PLAIN", "last wins"),
            ("SINGLE", "no \\n escape"),
            ("SPACED", "padded"),
            ("WITH_EQ", "a=b=c"),
        ];
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        assert!(parse_dotenv("").unwrap().is_empty());
    }

    #[test]
    fn bad_dotenv_lines_are_named_without_their_values() {
        for (text, want) in [
            ("A=1\nsecret-without-equals\n", "line 2 is not KEY=value"),
            (
                "BAD NAME=hunter2\n",
                "line 1: invalid variable name \"BAD NAME\"",
            ),
            ("=hunter2\n", "line 1: invalid variable name \"\""),
            (
                "A=1\nTOKEN=\"hunter2\n",
                "line 2: the quoted value of TOKEN does not end on its line",
            ),
        ] {
            let err = parse_dotenv(text).unwrap_err();
            assert_eq!(err, want, "{text:?}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    fn name(url: &str) -> Option<String> {
        repository_app_name(url).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn repositories_are_named_owner_repo_like_metacall() {
        for (url, want) in [
            ("https://github.com/Foo/Bar.git", "foo-bar"),
            ("https://github.com/Foo/Bar", "foo-bar"),
            ("https://github.com/Foo/Bar/", "foo-bar"),
            (
                "https://github.com/metacall/Example.Repo.git",
                "metacall-example-repo",
            ),
            ("ssh://git@github.com/Foo/Bar.git", "foo-bar"),
            ("https://gitlab.com/group/sub/Project.git", "sub-project"),
            ("file:///srv/git/Owner/MyApp", "owner-myapp"),
            ("file:///srv/git/Owner/MyApp.git", "owner-myapp"),
            ("https://example.com/Solo.git", "solo"),
            ("file:///solo", "solo"),
        ] {
            assert_eq!(name(url).as_deref(), Some(want), "{url}");
        }
        assert_eq!(name("https://example.com/"), None);
        assert_eq!(name("https://example.com"), None);
    }
}
