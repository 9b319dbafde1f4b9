//! The stage graph: each stage's deps and outs as paths relative to the project root, who
//! produces what, and an order that runs every stage after the stages it depends on.
//!
//! Refuses, naming the spec position: an out or dep outside the project (through `..` or a
//! symlinked directory), an out that is the spec, its lock, `.git`, the pipeline run directory
//! or a directory holding it, a run directory inside an out or outside the project, two stages
//! writing one out (or one inside another's), a cycle, and a dep that no stage produces and that
//! does not exist. Reads only file existence; writes nothing.

use std::path::{Path, PathBuf};

use crate::spec::{Located, PipelineSpec, SpecError, Stage};

/// One stage in the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Deps relative to the project root.
    pub deps: Vec<String>,
    /// Outs relative to the project root.
    pub outs: Vec<String>,
    /// The working directory relative to the project root (`.` for training stages).
    pub wdir: String,
    /// Indices of the stages whose outs it reads.
    pub upstream: Vec<usize>,
}

/// The validated graph of a pipeline.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The project root: the git work tree holding the spec, else the current directory when
    /// the spec lies below it, else the spec's directory.
    pub root: PathBuf,
    /// The spec's directory relative to the root (`.` when it is the root).
    pub base: String,
    /// One node per stage, in spec order.
    pub nodes: Vec<Node>,
    /// Stage indices in an order that respects every dependency (spec order among equals).
    pub order: Vec<usize>,
}

/// Whether `a` is `b` or lies inside it (both root-relative, normalised).
pub fn within(a: &str, b: &str) -> bool {
    b == "." || a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
}

/// `base/p` normalised; `None` when it leaves the root.
fn rooted(base: &str, p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(p.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

impl Graph {
    /// Build and check the graph of `spec`.
    pub fn build(spec: &PipelineSpec) -> Result<Graph, SpecError> {
        let (root, base) = root_of(spec);
        let b = Builder {
            spec,
            root: &root,
            base: &base,
        };
        let protected = Protected::of(spec, &root, &base)?;
        let mut nodes = spec
            .stages
            .iter()
            .map(|stage| b.node(stage, &protected))
            .collect::<Result<Vec<_>, _>>()?;
        b.check_overlaps(&nodes)?;
        b.link_upstream(&mut nodes)?;
        let order = topo_order(&nodes).map_err(|cycle| {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| spec.stages[i].name.value.as_str())
                .collect();
            b.fail(
                &spec.stages[cycle[0]].name,
                format!(
                    "the stages form a cycle: {} -> {}",
                    names.join(" -> "),
                    names[0]
                ),
            )
        })?;
        Ok(Graph {
            root,
            base,
            nodes,
            order,
        })
    }

    /// `index` and every stage it (transitively) depends on, in run order.
    pub fn with_upstream(&self, index: usize) -> Vec<usize> {
        let mut keep = vec![false; self.nodes.len()];
        let mut stack = vec![index];
        while let Some(i) = stack.pop() {
            if !keep[i] {
                keep[i] = true;
                stack.extend(&self.nodes[i].upstream);
            }
        }
        self.order.iter().copied().filter(|&i| keep[i]).collect()
    }

    /// Stages whose outs no other stage reads.
    pub fn is_final(&self, index: usize) -> bool {
        !self.nodes.iter().any(|n| n.upstream.contains(&index))
    }

    /// The graph drawn as a tree, one line per stage (`label(i, true)`): stages that depend on
    /// nothing at the left, each stage under the first stage it reads from, and its short label
    /// (`label(i, false)`) with a pointer back under every other one.
    pub fn draw(&self, label: &dyn Fn(usize, bool) -> String) -> Vec<String> {
        let mut lines = Vec::new();
        let mut drawn = vec![false; self.nodes.len()];
        for &i in &self.order {
            if self.nodes[i].upstream.is_empty() {
                self.draw_from(i, "", "", label, &mut drawn, &mut lines);
            }
        }
        lines
    }

    fn draw_from(
        &self,
        i: usize,
        lead: &str,
        rest: &str,
        label: &dyn Fn(usize, bool) -> String,
        drawn: &mut [bool],
        lines: &mut Vec<String>,
    ) {
        if drawn[i] {
            lines.push(format!("{lead}{} (drawn above)", label(i, false)));
            return;
        }
        drawn[i] = true;
        lines.push(format!("{lead}{}", label(i, true)));
        let children: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&c| self.nodes[c].upstream.contains(&i))
            .collect();
        for (k, &c) in children.iter().enumerate() {
            let last = k + 1 == children.len();
            let (l, r) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            self.draw_from(
                c,
                &format!("{rest}{l}"),
                &format!("{rest}{r}"),
                label,
                drawn,
                lines,
            );
        }
    }

    /// Every edge `(from, to)`: `to` reads an out of `from`.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut e = Vec::new();
        for &to in &self.order {
            for &from in &self.nodes[to].upstream {
                e.push((from, to));
            }
        }
        e
    }

    /// A root-relative path on disk.
    pub fn path(&self, rel: &str) -> PathBuf {
        if rel == "." {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// A path relative to the root, or `None` outside it.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(path)
        };
        let abs = normalize_abs(&abs);
        let rel = abs.strip_prefix(&self.root).ok()?;
        let s = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        Some(if s.is_empty() { ".".to_string() } else { s })
    }
}

/// The project root (the git work tree holding the spec, else the current directory when the
/// spec lies below it, else the spec's directory) and the spec's directory relative to it.
fn root_of(spec: &PipelineSpec) -> (PathBuf, String) {
    let spec_dir = spec.base();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let spec_dir_abs = canon(spec_dir);
    let cwd = std::env::current_dir().ok().map(|c| canon(&c));
    let root = crate::provenance::work_tree_root(spec_dir)
        .map(|r| canon(&r))
        .filter(|r| spec_dir_abs.starts_with(r))
        .or_else(|| cwd.filter(|c| spec_dir_abs.starts_with(c)))
        .unwrap_or_else(|| spec_dir_abs.clone());
    let base = spec_dir_abs
        .strip_prefix(&root)
        .ok()
        .map(|r| r.to_string_lossy().into_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| ".".to_string());
    (root, base)
}

/// What building the graph needs at every step.
struct Builder<'a> {
    spec: &'a PipelineSpec,
    root: &'a Path,
    base: &'a str,
}

impl Builder<'_> {
    fn fail(&self, at: &Located<String>, message: String) -> SpecError {
        SpecError::Invalid {
            path: self.spec.source.clone(),
            pos: at.pos,
            message,
        }
    }

    /// One stage's node: its deps, outs and wdir, root-relative and checked.
    fn node(&self, stage: &Stage, protected: &Protected) -> Result<Node, SpecError> {
        let resolve = |p: &Located<String>, what: &str| {
            let r = rooted(self.base, &p.value).ok_or_else(|| {
                self.fail(
                    p,
                    format!(
                        "{what} `{}` of stage `{}` lies outside the project {}",
                        p.value,
                        stage.name.value,
                        self.root.display()
                    ),
                )
            })?;
            if what == "out" {
                if r == "." {
                    return Err(self.fail(
                        p,
                        format!(
                            "out `{}` is the whole project; name a file or directory in it",
                            p.value
                        ),
                    ));
                }
                protected
                    .check(&r)
                    .map_or(Ok(()), |why| Err(self.fail(p, why)))?;
            }
            escapes_by_symlink(self.root, &r, what).map_or(Ok(()), |why| Err(self.fail(p, why)))?;
            Ok::<String, SpecError>(r)
        };
        let wdir = match stage.command() {
            None => ".".to_string(),
            Some(c) => rooted(self.base, &c.wdir).ok_or_else(|| {
                self.fail(
                    &stage.name,
                    format!(
                        "wdir `{}` of stage `{}` lies outside the project {}",
                        c.wdir,
                        stage.name.value,
                        self.root.display()
                    ),
                )
            })?,
        };
        for f in &stage.param_files {
            resolve(f, "parameter file")?;
        }
        Ok(Node {
            deps: stage
                .deps
                .iter()
                .map(|d| resolve(d, "dep"))
                .collect::<Result<Vec<_>, _>>()?,
            outs: stage
                .outs
                .iter()
                .map(|o| resolve(o, "out"))
                .collect::<Result<Vec<_>, _>>()?,
            wdir,
            upstream: Vec::new(),
        })
    }

    /// Two stages writing one out, or one out inside another stage's.
    fn check_overlaps(&self, nodes: &[Node]) -> Result<(), SpecError> {
        let stages = &self.spec.stages;
        for (i, a) in nodes.iter().enumerate() {
            for (j, b) in nodes.iter().enumerate().skip(i + 1) {
                for oa in &a.outs {
                    let hit = b
                        .outs
                        .iter()
                        .position(|ob| within(oa, ob) || within(ob, oa));
                    if let Some(pos_b) = hit {
                        let ob = &b.outs[pos_b];
                        let also = if oa == ob {
                            String::new()
                        } else {
                            format!(" (and `{oa}`)")
                        };
                        return Err(self.fail(
                            &stages[j].outs[pos_b],
                            format!(
                                "stages `{}` and `{}` both write `{ob}`{also}",
                                stages[i].name.value, stages[j].name.value,
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Who produces each dep: every node's upstream stages; a dep nobody produces must exist.
    fn link_upstream(&self, nodes: &mut [Node]) -> Result<(), SpecError> {
        let stages = &self.spec.stages;
        for i in 0..nodes.len() {
            let mut upstream = Vec::new();
            for (d_i, d) in nodes[i].deps.iter().enumerate() {
                let producers: Vec<usize> = nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, n)| *j != i && n.outs.iter().any(|o| within(d, o) || within(o, d)))
                    .map(|(j, _)| j)
                    .collect();
                if producers.is_empty() {
                    if nodes[i].outs.iter().any(|o| within(d, o) || within(o, d)) {
                        return Err(self.fail(
                            &stages[i].deps[d_i],
                            format!(
                                "stage `{}` reads `{d}`, which overlaps its own out",
                                stages[i].name.value
                            ),
                        ));
                    }
                    if std::fs::symlink_metadata(self.root.join(d)).is_err() {
                        return Err(self.fail(
                            &stages[i].deps[d_i],
                            format!(
                                "dep `{d}` of stage `{}` does not exist and no stage produces it",
                                stages[i].name.value
                            ),
                        ));
                    }
                }
                for p in producers {
                    if !upstream.contains(&p) {
                        upstream.push(p);
                    }
                }
            }
            upstream.sort_unstable();
            nodes[i].upstream = upstream;
        }
        Ok(())
    }
}

/// What no stage may write: the spec, its lock, `.git`, and the pipeline run directory (or a
/// directory holding it), all root-relative.
struct Protected {
    spec: String,
    lock: String,
    run_dir: String,
}

impl Protected {
    /// The protected paths of `spec`; refuses a run directory outside the project.
    fn of(spec: &PipelineSpec, root: &Path, base: &str) -> Result<Protected, SpecError> {
        let file = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let in_base = |name: String| rooted(base, &name).unwrap_or(name);
        let spec_rel = in_base(file(&spec.source));
        let lock_rel = in_base(file(&crate::stages::lock::path_for(&spec.source)));
        let run_abs = normalize_abs(
            &std::env::current_dir()
                .unwrap_or_default()
                .join(&spec.run_dir),
        );
        let run_rel = run_abs
            .strip_prefix(root)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
            .filter(|r| !r.is_empty());
        let Some(run_dir) = run_rel else {
            return Err(SpecError::Invalid {
                path: spec.source.clone(),
                pos: spec
                    .run_dir_pos
                    .unwrap_or(crate::spec::Pos { line: 1, column: 1 }),
                message: format!(
                    "the pipeline run directory {} lies outside the project {} (or is the project itself)",
                    run_abs.display(),
                    root.display()
                ),
            });
        };
        Ok(Protected {
            spec: spec_rel,
            lock: lock_rel,
            run_dir,
        })
    }

    /// Why the out `r` may not be written, if it may not.
    fn check(&self, r: &str) -> Option<String> {
        if within(&self.spec, r) {
            return Some(format!("out `{r}` is (or holds) the pipeline spec"));
        }
        if within(&self.lock, r) {
            return Some(format!("out `{r}` is (or holds) the pipeline's lock"));
        }
        if r.split('/').any(|c| c == ".git") {
            return Some(format!("out `{r}` is inside `.git`"));
        }
        if within(&self.run_dir, r) {
            return Some(format!(
                "out `{r}` is (or holds) the pipeline run directory `{}`",
                self.run_dir
            ));
        }
        if within(r, &self.run_dir) {
            return Some(format!(
                "out `{r}` lies inside the pipeline run directory `{}`, which only auditai writes",
                self.run_dir
            ));
        }
        None
    }
}

/// `path` with `.` and `..` removed lexically, then with its existing prefix canonicalised.
fn normalize_abs(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    // Canonicalise the deepest existing ancestor, so /tmp vs /private/tmp and symlinked
    // directories compare equal.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(n), Some(p)) => {
                rest.push(n);
                existing = p.to_path_buf();
            }
            _ => return out,
        }
    }
    let mut canon = std::fs::canonicalize(&existing).unwrap_or(existing);
    for n in rest.into_iter().rev() {
        canon.push(n);
    }
    canon
}

/// Why writing `rel` would leave the root through a symlinked directory, if it would.
fn escapes_by_symlink(root: &Path, rel: &str, what: &str) -> Option<String> {
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::canonicalize(&at).ok();
                if target.as_ref().is_none_or(|t| !t.starts_with(root)) {
                    return Some(format!(
                        "{what} `{rel}` goes through the symlink {}, which leaves the project",
                        at.display()
                    ));
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Kahn's algorithm, taking the lowest ready index first; on a cycle, the stages on one.
fn topo_order(nodes: &[Node]) -> Result<Vec<usize>, Vec<usize>> {
    let mut indegree: Vec<usize> = nodes.iter().map(|n| n.upstream.len()).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut done = vec![false; nodes.len()];
    while order.len() < nodes.len() {
        let Some(next) = (0..nodes.len()).find(|&i| !done[i] && indegree[i] == 0) else {
            return Err(find_cycle(nodes, &done));
        };
        done[next] = true;
        order.push(next);
        for (i, n) in nodes.iter().enumerate() {
            if n.upstream.contains(&next) {
                indegree[i] -= 1;
            }
        }
    }
    Ok(order)
}

/// Walk upstream from a stage left over by the sort until a stage repeats.
fn find_cycle(nodes: &[Node], done: &[bool]) -> Vec<usize> {
    let Some(mut at) = (0..nodes.len()).find(|&i| !done[i]) else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(p) = path.iter().position(|&x| x == at) {
            // Walked from consumer to producer; shown in data-flow order from the first stage.
            let mut cycle = path[p..].to_vec();
            cycle.reverse();
            if let Some(first) = (0..cycle.len()).min_by_key(|&k| cycle[k]) {
                cycle.rotate_left(first);
            }
            return cycle;
        }
        path.push(at);
        match nodes[at].upstream.iter().find(|&&u| !done[u]) {
            Some(&u) => at = u,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooted_refuses_escapes() {
        assert_eq!(rooted("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(rooted(".", "../c"), None);
        assert!(within("a/b", "a"));
        assert!(!within("ab", "a"));
    }

    #[test]
    fn cycles_are_found() {
        let n = |up: Vec<usize>| Node {
            deps: vec![],
            outs: vec![],
            wdir: ".".into(),
            upstream: up,
        };
        assert_eq!(topo_order(&[n(vec![]), n(vec![0])]), Ok(vec![0, 1]));
        let cycle = topo_order(&[n(vec![1]), n(vec![0])]).unwrap_err();
        assert_eq!(cycle.len(), 2);
    }
}
