//! Project and bundle descriptions: `manifest.json`, `morel.toml`, `metacall.json`
//! (morel-manifest).

use morel_manifest::{
    Manifest, ManifestError, parse_metacall_json_for_fuzzing, parse_morel_toml_for_fuzzing,
};

use crate::Sig;

pub(crate) const MANIFEST_TOKENS: &[&[u8]] = &[
    b"\"version\":\"1.0\"",
    b"\"project_name\":",
    b"\"function_registry\":{",
    b"\"resources\":{",
    b"\"routes\":{",
    b"\"resource_type\":\"LoadBalancerSlsResource\"",
    b"\"runtime\":\"http\"",
    b"\"runtime\":\"wasm\"",
    b"\"http\":{\"command\":[\"./server\"],\"health\":\"/health\",\"warmup_s\":0}",
    b"\"http_method\":\"GET\",\"http_path\":\"/x\"",
    b"\"workers_min\":",
    b"\"workers_max\":0",
    b"\"concurrency\":0",
    b"\"cpu\":",
    b"\"memory_mb\":",
    b"\"env\":{\"A\":\"b\"}",
    b"\"dependencies\":{\"kind\":\"pip\",\"file\":\"requirements.txt\",\"hash\":\"x\"}",
];

pub(crate) const TOML_TOKENS: &[&[u8]] = &[
    b"[app]\n",
    b"[resources.web]\n",
    b"[[resources]]\n",
    b"name = ",
    b"runtime = \"http\"\n",
    b"command = [\"./server\"]\n",
    b"workers = [1, 3]\n",
    b"routes = { \"POST /checkout\" = \"checkout\" }\n",
    b"env = { A = \"b\" }\n",
    b"timeout_s = 1e400\n",
    b"cpu = nan\n",
    b"\"\"\"",
    b"'''",
    b"= ",
    b"\n",
    b"#",
    b"1979-05-27T07:32:00Z",
    b"\\U0001F600",
    b"0x7fffffffffffffff",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
];

pub(crate) const METACALL_TOKENS: &[&[u8]] = &[
    b"\"language_id\":\"py\"",
    b"\"language_id\":\"node\"",
    b"\"path\":\"",
    b"\"scripts\":[\"",
    b"\"./\"",
    b"\"../\"",
    b"\"/\"",
    b"\"a/..\"",
    b"\"..\"",
];

/// A manifest that parses is valid, serializes and parses back to itself, hashes the same
/// twice, and resolves every registered function to the resource that defines it.
pub(crate) fn manifest_json(data: &[u8]) -> u64 {
    match Manifest::from_json(data) {
        Err(e) => Sig::new("manifest refused").str(&error_class(&e)).done(),
        Ok(m) => {
            m.validate().expect("a parsed manifest is valid");
            let text = m.to_json_pretty();
            let again = Manifest::from_json(text.as_bytes())
                .unwrap_or_else(|e| panic!("a manifest does not parse back ({e}): {text}"));
            assert_eq!(again, m, "a manifest's round trip");
            for (name, spec) in &m.resources {
                assert_eq!(
                    spec.compute_config_hash(),
                    spec.compute_config_hash(),
                    "the config hash of {name}"
                );
            }
            for function in m.function_registry.keys() {
                let (_, spec) = m
                    .resource_of(function)
                    .unwrap_or_else(|| panic!("registered function {function:?} has no resource"));
                assert!(
                    spec.functions.iter().any(|f| &f.name == function),
                    "{function:?}'s resource does not define it"
                );
            }
            let runtimes: std::collections::BTreeSet<String> = m
                .resources
                .values()
                .map(|r| r.runtime.to_string())
                .collect();
            let mut sig = Sig::new("manifest")
                .size(m.resources.len())
                .size(m.function_registry.len())
                .size(m.routes.len());
            for r in runtimes {
                sig = sig.str(&r);
            }
            sig.done()
        }
    }
}

fn error_class(e: &ManifestError) -> String {
    match e {
        ManifestError::Field { field, message, .. } => {
            // The field path's first part only: names inside it are the input's.
            let field = field.split('.').next().unwrap_or("");
            format!("field {field} {}", crate::sig::message_class(message))
        }
        other => crate::sig::message_class(&other.to_string()),
    }
}

/// `morel.toml` as the build reads it (a file that is not UTF-8 never reaches the parser). A
/// refusal names a line of the file.
pub(crate) fn morel_toml(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        return Sig::new("toml not utf-8").done();
    };
    match parse_morel_toml_for_fuzzing(text) {
        Ok(config) => {
            // Which settings appear in any resource, not how often.
            let rs: Vec<_> = config.resources.values().collect();
            Sig::new("toml")
                .flag(config.app.name.is_some())
                .size(rs.len().min(4))
                .flag(rs.iter().any(|s| s.runtime.is_some()))
                .flag(rs.iter().any(|s| s.command.is_some()))
                .flag(rs.iter().any(|s| s.workers.is_some()))
                .flag(rs.iter().any(|s| !s.routes.is_empty()))
                .flag(rs.iter().any(|s| !s.env.is_empty()))
                .flag(rs.iter().any(|s| !s.functions.is_empty()))
                .done()
        }
        Err(ManifestError::Field { field, message, .. }) => {
            if field != "-" {
                let line: usize = field
                    .strip_prefix("line ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a refusal names a line: {field:?}"));
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines + 1).contains(&line),
                    "line {line} of a {lines}-line file"
                );
            }
            Sig::new("toml refused").message(&message).done()
        }
        Err(other) => panic!("morel.toml refused with an unexpected kind of error: {other}"),
    }
}

/// `metacall*.json` as the build reads it: each description it accepts has a language the
/// build runs and at least one script, none of which leaves the project directory.
pub(crate) fn metacall_json(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        return Sig::new("metacall not utf-8").done();
    };
    match parse_metacall_json_for_fuzzing("metacall.json", text) {
        Err(e) => Sig::new("metacall refused").str(&error_class(&e)).done(),
        Ok(entries) => {
            for (_, scripts) in &entries {
                assert!(!scripts.is_empty(), "a description without scripts");
                for s in scripts {
                    assert!(!s.starts_with('/'), "an absolute script {s:?}");
                    assert!(
                        !s.split('/').any(|c| c == ".."),
                        "a script that climbs: {s:?}"
                    );
                }
            }
            // Which runtimes, how many descriptions and scripts: not which in which order.
            let runtimes: std::collections::BTreeSet<String> =
                entries.iter().map(|(r, _)| r.to_string()).collect();
            let scripts = entries.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
            let mut sig = Sig::new("metacall")
                .size(entries.len().min(4))
                .size(scripts.min(4))
                .flag(entries.iter().flat_map(|(_, s)| s).any(|s| s.contains('/')));
            for r in runtimes {
                sig = sig.str(&r);
            }
            sig.done()
        }
    }
}
