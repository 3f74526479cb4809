//! The layering of `ARCHITECTURE.md`, checked on the source tree: which module may name which
//! (`crate::…` paths, in `use` lines or inline), no circle among the app, config and services,
//! and no oversized file outside pure domain modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` (the bench binary aside), as (module path, text):
/// `src/services/alerting/mod.rs` is `services::alerting`.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|p| !p.starts_with(root.join("bin")))
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            (parts.join("::"), std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}

/// The modules a file names: every `crate::a::b` (and the `a::b` of `use crate::{a::b, …}` is
/// not used in this tree), cut to the known module paths it starts with.
fn named(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        // The longest prefix that is a module.
        for n in (1..=segments.len()).rev() {
            let candidate = segments[..n].join("::");
            if modules.contains(&candidate) {
                out.insert(candidate);
                break;
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    files
        .iter()
        .map(|(m, text)| {
            let mut deps = named(text, &modules);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

fn under(module: &str, layer: &str) -> bool {
    module == layer || module.starts_with(&format!("{layer}::"))
}

/// Each layer names only the layers below it (ARCHITECTURE.md's table).
#[test]
fn each_layer_names_only_the_layers_below_it() {
    let forbidden: &[(&str, &[&str])] = &[
        (
            "domain",
            &["store", "app", "services", "web", "cli", "config"],
        ),
        ("store", &["app", "services", "web", "cli", "config"]),
        ("config", &["app", "services", "web", "cli", "store"]),
        ("outbound", &["app", "services", "web", "cli", "store"]),
        ("app", &["services", "web", "cli"]),
        ("services", &["web", "cli"]),
        ("web::api", &["web::pages", "cli"]),
        ("web", &["cli"]),
    ];
    let mut broken = Vec::new();
    for (module, deps) in graph() {
        for (layer, refused) in forbidden {
            if !under(&module, layer) {
                continue;
            }
            for dep in &deps {
                if refused.iter().any(|r| under(dep, r)) {
                    broken.push(format!("{module} names {dep}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:#?}");
}

/// No circle among the app, config and the services: a depth-first search over their edges
/// finds no back edge.
#[test]
fn app_config_and_services_form_no_circle() {
    let g = graph();
    let inside = |m: &str| m == "app" || m == "config" || under(m, "services");
    let nodes: Vec<&String> = g.keys().filter(|m| inside(m)).collect();
    assert!(nodes.len() >= 10, "found the services: {nodes:?}");
    fn visit<'a>(
        node: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        inside: &dyn Fn(&str) -> bool,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == node) {
            panic!("circle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node);
        for dep in g.get(node).into_iter().flatten() {
            if inside(dep) {
                visit(dep, g, inside, path, done);
            }
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in nodes {
        visit(node, &g, &inside, &mut Vec::new(), &mut done);
    }
}

/// The checker itself: a module naming one above it is caught.
#[test]
fn a_module_naming_a_higher_layer_is_seen() {
    let modules: BTreeSet<String> = ["web::error", "services::alerting", "domain::url"]
        .map(String::from)
        .into();
    let text = "use crate::domain::url::urlencode;\nfn f() { crate::web::error::x() }";
    assert_eq!(
        named(text, &modules),
        ["domain::url", "web::error"].map(String::from).into()
    );
}

/// No file under `src/` over 1,000 lines, nor over 800 in `web/`, except pure domain modules
/// (whose tests sit beside them).
#[test]
fn no_file_outgrows_its_layer() {
    let mut long = Vec::new();
    for (module, text) in sources() {
        let lines = text.lines().count();
        let limit = if under(&module, "domain") {
            usize::MAX
        } else if under(&module, "web") {
            800
        } else {
            1_000
        };
        if lines > limit {
            long.push(format!("{module}: {lines} lines (limit {limit})"));
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}
