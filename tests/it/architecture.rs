//! The tree's stated boundaries, checked (ARCHITECTURE.md states them; this
//! test keeps them true). `cargo test --test it architecture`. It parses every file of the library and the
//! binary with `syn`, walks the module tree from `src/lib.rs` and
//! `src/main.rs`, and fails when:
//!
//! - a module uses what its boundary forbids ([`BOUNDARIES`]): tokio,
//!   rocksdb, tonic, openraft, a clock or `rand` in the model outside its
//!   tests; openraft outside `raft`; the client on server modules;
//! - the top-level modules of `src/` import each other in a cycle;
//! - a production file is longer than [`FILE_LINES_MAX`] or a production
//!   function longer than [`FN_LINES_MAX`] without an entry, with its
//!   reason, in [`LONG_FILES`] or [`LONG_FNS`] (an entry that no longer
//!   needs to be there fails too, so the lists stay true).
//!
//! Test code (`#[cfg(test)]` modules and `#[test]` functions) is exempt from
//! the size limits and the boundaries, but not from the cycle check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// A production file longer than this needs a reason in [`LONG_FILES`].
const FILE_LINES_MAX: usize = 500;
/// A production function longer than this needs a reason in [`LONG_FNS`].
const FN_LINES_MAX: usize = 70;

/// Production files allowed past [`FILE_LINES_MAX`], each with its reason.
const LONG_FILES: &[(&str, &str)] = &[];

/// Production functions allowed past [`FN_LINES_MAX`] (`file::function`),
/// each with its reason.
const LONG_FNS: &[(&str, &str)] = &[];

/// What one part of the tree must not know.
struct Boundary {
    /// The module path it covers (`model`, `raft`, ...), or `*` for all.
    scope: &'static str,
    /// Modules inside the scope that the boundary does not cover.
    except: &'static [&'static str],
    /// Path prefixes it must not use (`tokio`, `crate::store`,
    /// `std::time::Instant`).
    forbidden: &'static [&'static str],
    why: &'static str,
}

/// The server's modules: what a client build leaves out.
const SERVER: &[&str] = &[
    "crate::api",
    "crate::duties",
    "crate::meter",
    "crate::observe",
    "crate::raft",
    "crate::server",
    "crate::store",
    "rocksdb",
    "openraft",
];

const BOUNDARIES: &[Boundary] = &[
    Boundary {
        scope: "model",
        except: &[],
        forbidden: &[
            "tokio",
            "rocksdb",
            "tonic",
            "openraft",
            "rand",
            "std::time::Instant",
            "std::time::SystemTime",
            "std::time::UNIX_EPOCH",
            "crate::clock",
            "crate::codec",
            "crate::store",
            "crate::raft",
            "crate::api",
            "crate::duties",
            "crate::server",
            "crate::client",
            "crate::cli",
            "crate::worker",
            "crate::wire",
        ],
        why: "the model is pure and deterministic: time and seeds arrive stamped in commands",
    },
    Boundary {
        scope: "*",
        except: &["raft"],
        forbidden: &["openraft"],
        why: "openraft types live in one module, so that an alpha upgrade touches one place",
    },
    Boundary {
        scope: "*",
        except: &["store"],
        forbidden: &["rocksdb"],
        why: "RocksDB is the store's alone",
    },
    Boundary {
        scope: "client",
        except: &[],
        forbidden: SERVER,
        why: "the client builds without the server",
    },
    Boundary {
        scope: "worker",
        except: &[],
        forbidden: SERVER,
        why: "the worker agent is a client: it builds without the server",
    },
    Boundary {
        scope: "observe",
        except: &[],
        forbidden: &[
            "crate::api",
            "crate::duties",
            "crate::server",
            "crate::store",
            "crate::client",
            "crate::cli",
            "crate::worker",
        ],
        why: "observe reads a node (its state, its Raft status, its data dir's size) and knows \
              nothing of how it is served, stored or called",
    },
    Boundary {
        scope: "tls",
        except: &[],
        forbidden: &[
            "crate::api",
            "crate::duties",
            "crate::raft",
            "crate::server",
            "crate::store",
            "crate::observe",
            "crate::client",
            "crate::cli",
            "crate::worker",
        ],
        why: "tls knows certificates and connections, never what they carry: the node wires \
              it in, and a handler asks it only who called",
    },
    Boundary {
        scope: "duties",
        except: &[],
        forbidden: &["tonic", "crate::api", "crate::proto"],
        why: "a node's duties write through `RaftNode` like any client and know no gRPC",
    },
];

/// Modules that import no other laneq module.
const LEAVES: &[&str] = &["clock", "codec", "gather", "meter", "wire"];

/// One module's source: where it is, what it is, and its syntax tree.
struct Module {
    /// Relative to the repository root.
    file: PathBuf,
    /// `model::state`, or `` for the crate root; `main` for the binary.
    path: Vec<String>,
    /// Declared under `#[cfg(test)]`, itself or an ancestor.
    test_only: bool,
    ast: syn::File,
    text: String,
}

/// The tree to check: this one, or `LANEQ_ARCH_ROOT` (to report on another
/// checkout, e.g. an older commit's, with this test's rules).
fn root() -> PathBuf {
    std::env::var_os("LANEQ_ARCH_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `#[test]`, `#[tokio::test]`, or a `#[cfg(...)]` that needs `test`.
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        if path.segments.last().is_some_and(|s| s.ident == "test") {
            return true;
        }
        let tokens = quote::ToTokens::to_token_stream(&a.meta).to_string();
        path.is_ident("cfg") && tokens.contains("test") && !tokens.contains("not")
    })
}

/// Loads the module tree under `file` (the crate root or a module file).
fn load(file: &Path, path: Vec<String>, test_only: bool, out: &mut Vec<Module>) {
    let text = std::fs::read_to_string(root().join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("parse {}: {e}", file.display()));
    // Where this file's child modules live: beside a root or a mod.rs,
    // else in the folder named after the file.
    let name = file.file_stem().unwrap().to_str().unwrap();
    let dir = match name {
        "lib" | "main" | "mod" => file.parent().unwrap().to_path_buf(),
        _ => file.with_extension(""),
    };
    for item in &ast.items {
        let syn::Item::Mod(m) = item else { continue };
        if m.content.is_some() {
            continue; // inline modules are visited with their file
        }
        let child = m.ident.to_string();
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let child_file = if root().join(&flat).exists() {
            flat
        } else {
            nested
        };
        let mut child_path = path.clone();
        child_path.push(child);
        load(
            &child_file,
            child_path,
            test_only || is_cfg_test(&m.attrs),
            out,
        );
    }
    out.push(Module {
        file: file.to_path_buf(),
        path,
        test_only,
        ast,
        text,
    });
}

fn modules() -> Vec<Module> {
    let mut out = Vec::new();
    load(Path::new("src/lib.rs"), Vec::new(), false, &mut out);
    load(
        Path::new("src/main.rs"),
        vec!["main".into()],
        false,
        &mut out,
    );
    out
}

/// Every path a module's code names, flattened to `a::b::c` and resolved
/// against `crate` where it starts with `self` or `super`; with the line
/// and whether it is in test code.
struct Paths<'a> {
    module: &'a [String],
    in_test: bool,
    found: Vec<(String, usize, bool)>,
}

impl Paths<'_> {
    fn push(&mut self, segments: Vec<String>, line: usize) {
        let resolved = resolve(self.module, segments);
        self.found.push((resolved.join("::"), line, self.in_test));
    }

    fn use_tree(&mut self, prefix: Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix;
                next.push(p.ident.to_string());
                self.use_tree(next, &p.tree);
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix;
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.push(full, n.ident.span().start().line);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix;
                full.push(r.ident.to_string());
                self.push(full, r.ident.span().start().line);
            }
            syn::UseTree::Glob(g) => self.push(prefix, g.star_token.span().start().line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix.clone(), t);
                }
            }
        }
    }
}

/// `self::x` and `super::x` made absolute (`crate::...`).
fn resolve(module: &[String], segments: Vec<String>) -> Vec<String> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = segments.as_slice();
    let mut relative = false;
    while let Some(first) = rest.first() {
        match first.as_str() {
            "self" => relative = true,
            "super" => {
                relative = true;
                base.pop();
            }
            _ => break,
        }
        rest = &rest[1..];
    }
    if !relative {
        return segments;
    }
    let mut out = vec!["crate".to_string()];
    out.extend(base);
    out.extend(rest.iter().cloned());
    out
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push(segments, p.span().start().line);
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let outer = self.in_test;
        self.in_test |= is_cfg_test(&m.attrs);
        syn::visit::visit_item_mod(self, m);
        self.in_test = outer;
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let outer = self.in_test;
        self.in_test |= is_cfg_test(&f.attrs);
        syn::visit::visit_item_fn(self, f);
        self.in_test = outer;
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        let outer = self.in_test;
        self.in_test |= is_cfg_test(&i.attrs);
        syn::visit::visit_item_impl(self, i);
        self.in_test = outer;
    }
}

fn paths(m: &Module) -> Vec<(String, usize, bool)> {
    let mut v = Paths {
        module: &m.path,
        in_test: m.test_only,
        found: Vec::new(),
    };
    v.visit_file(&m.ast);
    v.found
}

/// Production functions and their lengths in lines, and the lines of a
/// file's inline test modules.
#[derive(Default)]
struct Sizes {
    fns: Vec<(String, usize)>,
    test_lines: usize,
    in_test: bool,
    owner: Vec<String>,
}

fn lines_of(span: proc_macro2::Span) -> usize {
    span.end().line - span.start().line + 1
}

impl<'ast> Visit<'ast> for Sizes {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_cfg_test(&m.attrs) && !self.in_test {
            if m.content.is_some() {
                self.test_lines += lines_of(m.span());
            }
            return;
        }
        syn::visit::visit_item_mod(self, m);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_cfg_test(&i.attrs) {
            return;
        }
        let ty = quote::ToTokens::to_token_stream(&i.self_ty).to_string();
        self.owner.push(ty.replace(' ', ""));
        syn::visit::visit_item_impl(self, i);
        self.owner.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_cfg_test(&f.attrs) {
            return;
        }
        let len = f.sig.fn_token.span.start().line;
        let end = f.block.span().end().line;
        self.fns.push((f.sig.ident.to_string(), end - len + 1));
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_cfg_test(&f.attrs) {
            return;
        }
        let start = f.sig.fn_token.span.start().line;
        let end = f.block.span().end().line;
        let owner = self.owner.last().cloned().unwrap_or_default();
        self.fns
            .push((format!("{owner}::{}", f.sig.ident), end - start + 1));
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            let start = f.sig.fn_token.span.start().line;
            let end = block.span().end().line;
            self.fns.push((f.sig.ident.to_string(), end - start + 1));
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn within(path: &[String], scope: &str) -> bool {
    scope == "*" || path.first().is_some_and(|p| p == scope)
}

fn boundary_violations(mods: &[Module]) -> Vec<String> {
    let mut out = Vec::new();
    for m in mods.iter().filter(|m| !m.test_only) {
        for b in BOUNDARIES {
            let covered = within(&m.path, b.scope)
                && !b.except.iter().any(|e| within(&m.path, e))
                && m.path.first().is_some_and(|p| p != "main");
            if !covered {
                continue;
            }
            for (path, line, in_test) in paths(m) {
                if in_test {
                    continue;
                }
                let hit = b.forbidden.iter().find(|f| {
                    path == **f
                        || path.starts_with(&format!("{f}::"))
                        || path == format!("::{f}")
                        || path.starts_with(&format!("::{f}::"))
                });
                if let Some(f) = hit {
                    let who = match b.scope {
                        "*" => format!("code outside `{}`", b.except.join("`, `")),
                        scope => format!("`{scope}`"),
                    };
                    out.push(format!(
                        "{}:{line}: `{path}` crosses a boundary: {who} must not use `{f}` ({})",
                        m.file.display(),
                        b.why
                    ));
                }
            }
        }
    }
    out
}

/// The top-level modules each top-level module uses (test code included).
fn module_graph(mods: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let tops: BTreeSet<String> = mods
        .iter()
        .filter_map(|m| m.path.first().cloned())
        .filter(|p| p != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in mods {
        let Some(from) = m.path.first().filter(|p| *p != "main") else {
            continue;
        };
        for (path, _, _) in paths(m) {
            let mut seg = path.split("::");
            if seg.next() != Some("crate") {
                continue;
            }
            if let Some(to) = seg.next().filter(|t| tops.contains(*t) && *t != from) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .insert(to.to_string());
            }
        }
    }
    graph
}

/// Every elementary cycle's smallest member first, each once.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        node: &str,
        stack: &mut Vec<String>,
        out: &mut BTreeSet<Vec<String>>,
    ) {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                out.insert(stack.clone());
            } else if next.as_str() > start && !stack.contains(next) {
                stack.push(next.clone());
                walk(graph, start, next, stack, out);
                stack.pop();
            }
        }
    }
    let mut out = BTreeSet::new();
    for start in graph.keys() {
        walk(graph, start, start, &mut vec![start.clone()], &mut out);
    }
    out.into_iter().collect()
}

struct Report {
    long_files: Vec<(String, usize)>,
    long_fns: Vec<(String, usize)>,
}

fn sizes(mods: &[Module]) -> Report {
    let mut report = Report {
        long_files: Vec::new(),
        long_fns: Vec::new(),
    };
    for m in mods.iter().filter(|m| !m.test_only) {
        let mut s = Sizes::default();
        s.visit_file(&m.ast);
        let file = m.file.display().to_string();
        let lines = m.text.lines().count() - s.test_lines;
        if lines > FILE_LINES_MAX {
            report.long_files.push((file.clone(), lines));
        }
        for (name, len) in s.fns {
            if len > FN_LINES_MAX {
                report.long_fns.push((format!("{file}::{name}"), len));
            }
        }
    }
    report
}

/// Entries past the limit without a reason, and reasons with no entry.
fn unlisted(
    found: &[(String, usize)],
    allowed: &[(&str, &str)],
    limit: usize,
    what: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, len) in found {
        if !allowed.iter().any(|(a, _)| a == name) {
            out.push(format!(
                "{name}: {len} lines, over the {limit}-line limit for a production {what}: \
                 split it at a seam, or list it with its reason"
            ));
        }
    }
    for (name, _) in allowed {
        if !found.iter().any(|(f, _)| f == name) {
            out.push(format!(
                "{name} is allowed past {limit} lines but is not (or no longer exists): drop \
                 its entry"
            ));
        }
    }
    out
}

#[test]
fn the_tree_keeps_its_boundaries() {
    let mods = modules();
    let mut problems = boundary_violations(&mods);
    let graph = module_graph(&mods);
    for leaf in LEAVES {
        if let Some(uses) = graph.get(*leaf).filter(|u| !u.is_empty()) {
            problems.push(format!(
                "`{leaf}` is a leaf but uses {}",
                uses.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for cycle in cycles(&graph) {
        let mut shown = cycle.clone();
        shown.push(cycle[0].clone());
        problems.push(format!("import cycle: {}", shown.join(" -> ")));
    }
    let report = sizes(&mods);
    problems.extend(unlisted(
        &report.long_files,
        LONG_FILES,
        FILE_LINES_MAX,
        "file",
    ));
    problems.extend(unlisted(
        &report.long_fns,
        LONG_FNS,
        FN_LINES_MAX,
        "function",
    ));
    eprintln!(
        "architecture: {} modules, {} import cycles, {} production files over {FILE_LINES_MAX} \
         lines, {} production functions over {FN_LINES_MAX}",
        mods.len(),
        cycles(&graph).len(),
        report.long_files.len(),
        report.long_fns.len()
    );
    for (from, to) in &graph {
        eprintln!(
            "  {from} -> {}",
            to.iter().cloned().collect::<Vec<_>>().join(" ")
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The checker finds what it is for: a cycle, and a forbidden path.
#[test]
fn the_checker_sees_cycles_and_crossings() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);

    let text = "use std::time::{Duration, Instant};\nfn f() { tokio::spawn(async {}); }\n\
                #[cfg(test)] mod tests { use rand::Rng; }\n";
    let module = Module {
        file: "src/model/x.rs".into(),
        path: vec!["model".into(), "x".into()],
        test_only: false,
        ast: syn::parse_file(text).unwrap(),
        text: text.into(),
    };
    let found = boundary_violations(&[module]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("std::time::Instant"), "{found:#?}");
    assert!(found[1].contains("tokio::spawn"), "{found:#?}");
    assert_eq!(
        resolve(
            &["model".into(), "state".into()],
            vec!["super".into(), "x".into()]
        ),
        ["crate", "model", "x"]
    );
}
