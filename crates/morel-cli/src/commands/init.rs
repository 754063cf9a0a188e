//! `morel init KIND [DIR]`: writes a project from a template that `morel deploy DIR` deploys as
//! it is, with a README and a test that runs without Morel.
//!
//! The templates are compiled into the binary, one small table of `(path, text)` per kind, from
//! `crates/morel-cli/templates/KIND/…`; `{{app}}` in a file stands for the app name. Tests live
//! under `tests/` (or `test/` for Node) because discovery only reads the project root: a test
//! file there would become a function. This is not a generator framework: no prompts, no
//! template variables beyond the app name, nothing fetched from the network.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use morel_core::AppName;

use crate::args::{InitArgs, InitKind};

/// One file of a template.
struct TemplateFile {
    /// Relative to the project directory.
    path: &'static str,
    text: &'static str,
    /// Written with mode 0755 (a script run by path).
    executable: bool,
}

/// A template: its files, and what to tell the user afterwards.
struct Template {
    files: &'static [TemplateFile],
    /// The template's own test, run in the project directory.
    test: &'static str,
    /// How to call the deployed project; `{{url}}` is the server, `{{app}}` the app.
    call: &'static str,
}

macro_rules! file {
    ($kind:literal, $path:literal) => {
        file!($kind, $path, false)
    };
    ($kind:literal, $path:literal, $executable:expr) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../../templates/", $kind, "/", $path)),
            executable: $executable,
        }
    };
}

const PYTHON: Template = Template {
    files: &[
        file!("python", "morel.toml"),
        file!("python", "hello.py"),
        file!("python", "tests/__init__.py"),
        file!("python", "tests/test_hello.py"),
        file!("python", "README.md"),
    ],
    test: "python3 -m unittest",
    call: r#"curl -X POST {{url}}/default/{{app}}/latest/call/greet -d '{"name":"Ada"}'"#,
};

const NODE: Template = Template {
    files: &[
        file!("node", "morel.toml"),
        file!("node", "package.json"),
        file!("node", "index.js"),
        file!("node", "test/index.test.js"),
        file!("node", "README.md"),
    ],
    test: "node --test",
    call: r#"curl -X POST {{url}}/default/{{app}}/latest/call/greet -d '{"name":"Ada"}'"#,
};

const HTTP: Template = Template {
    files: &[
        file!("http", "morel.toml"),
        file!("http", "server", true),
        file!("http", "tests/__init__.py"),
        file!("http", "tests/test_server.py"),
        file!("http", "README.md"),
    ],
    test: "python3 -m unittest",
    call: "curl '{{url}}/{{app}}/hello?name=Ada'",
};

const WASM_C: Template = Template {
    files: &[
        file!("wasm-c", "morel.toml"),
        file!("wasm-c", "sum.c"),
        file!("wasm-c", "tests/check.sh", true),
        file!("wasm-c", "README.md"),
    ],
    test: "tests/check.sh",
    call: "curl -X POST {{url}}/default/{{app}}/latest/call/sum -d '[1, 2, 3.5]'",
};

const WASM_RUST: Template = Template {
    files: &[
        file!("wasm-rust", "morel.toml"),
        file!("wasm-rust", "fib.rs"),
        file!("wasm-rust", "tests/check.sh", true),
        file!("wasm-rust", "README.md"),
    ],
    test: "tests/check.sh",
    call: "curl -X POST {{url}}/default/{{app}}/latest/call/fib -d '10'",
};

fn template(kind: InitKind) -> &'static Template {
    match kind {
        InitKind::Python => &PYTHON,
        InitKind::Node => &NODE,
        InitKind::Http => &HTTP,
        InitKind::WasmC => &WASM_C,
        InitKind::WasmRust => &WASM_RUST,
    }
}

/// Where the user's server is, for the printed `curl` line only.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub fn run(args: InitArgs) -> Result<()> {
    let template = template(args.kind);
    let app = app_name(&args.dir, args.name.as_deref())?;
    if args.dir.exists() && !args.dir.is_dir() {
        bail!("{} exists and is not a directory", args.dir.display());
    }
    // Check every file before writing any, so a refusal leaves the directory as it was.
    if !args.force {
        let taken: Vec<String> = template
            .files
            .iter()
            .map(|f| args.dir.join(f.path))
            .filter(|path| path.symlink_metadata().is_ok())
            .map(|path| path.display().to_string())
            .collect();
        if !taken.is_empty() {
            bail!(
                "{} already exists; morel init does not overwrite files (--force to overwrite)",
                taken.join(", ")
            );
        }
    }
    let mut written = Vec::new();
    for f in template.files {
        let path = args.dir.join(f.path);
        write_file(
            &path,
            &f.text.replace("{{app}}", app.as_str()),
            f.executable,
        )?;
        written.push(path);
    }

    println!("wrote {} project {app}:", kind_name(args.kind));
    for path in &written {
        println!("  {}", path.display());
    }
    let dir = shell_path(&args.dir);
    let url = crate::settings::login()
        .map(|l| l.url)
        .unwrap_or_else(|_| DEFAULT_URL.to_owned());
    println!("next:");
    println!(
        "  (cd {dir} && {})   # the test, without Morel",
        template.test
    );
    println!("  morel deploy {dir}");
    println!(
        "  {}",
        template
            .call
            .replace("{{url}}", &url)
            .replace("{{app}}", app.as_str())
    );
    Ok(())
}

fn kind_name(kind: InitKind) -> &'static str {
    match kind {
        InitKind::Python => "python",
        InitKind::Node => "node",
        InitKind::Http => "http",
        InitKind::WasmC => "wasm-c",
        InitKind::WasmRust => "wasm-rust",
    }
}

/// `--name`, else the directory's own name (of the current directory for `.`), made valid.
fn app_name(dir: &Path, name: Option<&str>) -> Result<AppName> {
    if let Some(name) = name {
        return name.parse().context("--name");
    }
    let full: PathBuf = match dir.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?
        }
    };
    let base = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    AppName::slugify(&base).with_context(|| {
        format!(
            "cannot make an app name of the directory name {base:?}: pass --name (lowercase letters, digits, '-' and '_')"
        )
    })
}

fn write_file(path: &Path, text: &str, executable: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

/// The directory as the user would type it in the printed commands (quoted when it needs to be).
fn shell_path(dir: &Path) -> String {
    let s = dir.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_names_its_app_and_has_a_readme_and_a_test() {
        for kind in [
            InitKind::Python,
            InitKind::Node,
            InitKind::Http,
            InitKind::WasmC,
            InitKind::WasmRust,
        ] {
            let t = template(kind);
            let paths: Vec<&str> = t.files.iter().map(|f| f.path).collect();
            assert!(paths.contains(&"README.md"), "{kind:?}: {paths:?}");
            assert!(paths.contains(&"morel.toml"), "{kind:?}: {paths:?}");
            assert!(
                paths.iter().any(|p| p.starts_with("test")),
                "{kind:?}: {paths:?}"
            );
            let toml = t.files.iter().find(|f| f.path == "morel.toml").unwrap();
            assert!(toml.text.contains("name = \"{{app}}\""), "{kind:?}");
        }
    }

    #[test]
    fn app_names_come_from_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("My Project");
        assert_eq!(app_name(&dir, None).unwrap().as_str(), "my-project");
        assert_eq!(app_name(&dir, Some("given")).unwrap().as_str(), "given");
        assert!(app_name(&dir, Some("Bad Name")).is_err());
        assert!(app_name(&d.path().join("..."), None).is_err());
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_path(Path::new("hello")), "hello");
        assert_eq!(shell_path(Path::new("my app")), "'my app'");
    }
}
