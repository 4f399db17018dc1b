//! The configuration tree of bhyve_config(5).
//!
//! bhyve keeps its settings in a tree of nvlists: interior nodes hold named
//! children, leaves hold string values. Paths are dot-separated
//! (`pci.0.3.0.device`). Like an nvlist, a node keeps its entries in
//! insertion order and setting an existing variable again moves it to the
//! end; `config.dump` output depends on that order.

use std::fmt::Write as _;

use crate::ConfigError;

/// Nesting depth at which `%(var)` references stop being followed (bhyve:
/// `depth > 15`); guards against self-referencing variables (`a=%(a)`).
const MAX_EXPANSION_DEPTH: usize = 16;

/// Work and size limits of one expansion: the depth limit alone still lets
/// a few host-supplied lines fan out exponentially (`a1=%(a0)%(a0)…`), so
/// past these budgets references are no longer followed.
const MAX_EXPANSION_REFS: usize = 4096;
const MAX_EXPANDED_LEN: usize = 1 << 20;

struct Budget {
    refs: usize,
    bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Value(String),
    Node(Node),
}

/// One node of the tree: an ordered list of named entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    entries: Vec<(String, Entry)>,
}

impl Node {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(n, _)| n == name)
    }

    /// Sets variable `name` directly in this node (bhyve's
    /// `set_config_value_node`). Unlike [`Node::set`], `name` is one
    /// component: it may be empty (bhyve's legacy parsers produce `=true`
    /// entries from empty list items) but must not contain a dot.
    pub fn set_value(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if name.contains('.') {
            return Err(ConfigError::BadName(name.to_string()));
        }
        if let Some(i) = self.find(name) {
            if matches!(self.entries[i].1, Entry::Node(_)) {
                return Err(ConfigError::IsNode(name.to_string()));
            }
            self.entries.remove(i);
        }
        self.entries
            .push((name.to_string(), Entry::Value(value.to_string())));
        Ok(())
    }

    /// Sets `name` to `value` only when it is not set yet.
    pub fn set_value_if_unset(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if self.raw_value(name).is_some() {
            return Ok(());
        }
        self.set_value(name, value)
    }

    /// Variable `name` directly in this node, unexpanded.
    pub fn get_value(&self, name: &str) -> Option<&str> {
        match self.find(name).map(|i| &self.entries[i].1) {
            Some(Entry::Value(v)) => Some(v),
            _ => None,
        }
    }

    /// Child node `name`, if it exists and is a node.
    pub fn child(&self, name: &str) -> Option<&Node> {
        match self.find(name).map(|i| &self.entries[i].1) {
            Some(Entry::Node(n)) => Some(n),
            _ => None,
        }
    }

    /// Walks a dotted path of nodes below this one.
    pub fn node(&self, path: &str) -> Option<&Node> {
        path.split('.')
            .try_fold(self, |node, part| node.child(part))
    }

    /// Raw (unexpanded) value at a dotted path below this node.
    pub fn raw_value(&self, path: &str) -> Option<&str> {
        let (parent, leaf) = match path.rsplit_once('.') {
            Some((p, l)) => (self.node(p)?, l),
            None => (self, path),
        };
        match parent.find(leaf).map(|i| &parent.entries[i].1) {
            Some(Entry::Value(v)) => Some(v),
            _ => None,
        }
    }

    /// Sets a value at a dotted path below this node, creating interior
    /// nodes as needed. Fails when a path component is already a variable
    /// or the leaf is already a node, as bhyve does.
    pub fn set(&mut self, path: &str, value: &str) -> Result<(), ConfigError> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(ConfigError::BadName(path.to_string()));
        }
        let mut node = self;
        let mut parts = path.split('.').peekable();
        let mut walked = String::new();
        while let Some(part) = parts.next() {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(part);
            if parts.peek().is_none() {
                if let Some(i) = node.find(part) {
                    if matches!(node.entries[i].1, Entry::Node(_)) {
                        return Err(ConfigError::IsNode(walked));
                    }
                    node.entries.remove(i);
                }
                node.entries
                    .push((part.to_string(), Entry::Value(value.to_string())));
                return Ok(());
            }
            let i = match node.find(part) {
                Some(i) => i,
                None => {
                    node.entries
                        .push((part.to_string(), Entry::Node(Node::new())));
                    node.entries.len() - 1
                }
            };
            node = match &mut node.entries[i].1 {
                Entry::Node(n) => n,
                Entry::Value(_) => return Err(ConfigError::IsVariable(walked)),
            };
        }
        unreachable!("path has at least one component")
    }

    /// Creates (or finds) the node at a dotted path.
    pub fn create_node(&mut self, path: &str) -> Result<&mut Node, ConfigError> {
        let mut node = self;
        let mut walked = String::new();
        for part in path.split('.') {
            if part.is_empty() {
                return Err(ConfigError::BadName(path.to_string()));
            }
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(part);
            let i = match node.find(part) {
                Some(i) => i,
                None => {
                    node.entries
                        .push((part.to_string(), Entry::Node(Node::new())));
                    node.entries.len() - 1
                }
            };
            node = match &mut node.entries[i].1 {
                Entry::Node(n) => n,
                Entry::Value(_) => return Err(ConfigError::IsVariable(walked)),
            };
        }
        Ok(node)
    }

    /// Removes a variable or node; returns whether it existed.
    pub fn remove(&mut self, path: &str) -> bool {
        let (parent, leaf) = match path.rsplit_once('.') {
            Some((p, l)) => match self.node_mut(p) {
                Some(n) => (n, l),
                None => return false,
            },
            None => (self, path),
        };
        match parent.find(leaf) {
            Some(i) => {
                parent.entries.remove(i);
                true
            }
            None => false,
        }
    }

    fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut node = self;
        for part in path.split('.') {
            let i = node.find(part)?;
            node = match &mut node.entries[i].1 {
                Entry::Node(n) => n,
                Entry::Value(_) => return None,
            };
        }
        Some(node)
    }

    /// Names of the child nodes, in order.
    pub fn child_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|(n, e)| match e {
            Entry::Node(_) => Some(n.as_str()),
            Entry::Value(_) => None,
        })
    }

    /// Variables directly in this node, in order, unexpanded.
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().filter_map(|(n, e)| match e {
            Entry::Value(v) => Some((n.as_str(), v.as_str())),
            Entry::Node(_) => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn dump_into(&self, prefix: &str, out: &mut String) {
        for (name, entry) in &self.entries {
            match entry {
                Entry::Value(v) => {
                    let _ = writeln!(out, "{prefix}{name}={v}");
                }
                Entry::Node(n) => n.dump_into(&format!("{prefix}{name}."), out),
            }
        }
    }
}

/// The whole configuration: the root node plus bhyve's lookup rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    root: Node,
}

impl Config {
    /// An empty tree (no defaults); see [`Config::with_defaults`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree bhyve starts from before parsing its command line.
    pub fn with_defaults() -> Self {
        let mut c = Self::new();
        for (k, v) in crate::DEFAULTS {
            c.set(k, v).expect("defaults are valid paths");
        }
        c
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    pub fn root_mut(&mut self) -> &mut Node {
        &mut self.root
    }

    pub fn set(&mut self, path: &str, value: &str) -> Result<(), ConfigError> {
        self.root.set(path, value)
    }

    pub fn set_bool(&mut self, path: &str, value: bool) -> Result<(), ConfigError> {
        self.root.set(path, if value { "true" } else { "false" })
    }

    /// The value at `path` with `%(var)` references expanded.
    pub fn get(&self, path: &str) -> Option<String> {
        self.root.raw_value(path).map(|v| self.expand(v))
    }

    /// Value of `name` looked up in `node` (a path below the root) with
    /// expansion; the form device models use for their own variables.
    pub fn get_in(&self, node: &str, name: &str) -> Option<String> {
        self.get(&format!("{node}.{name}"))
    }

    /// A boolean variable; `Ok(None)` when unset.
    pub fn get_bool(&self, path: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => parse_bool(&v)
                .map(Some)
                .ok_or_else(|| ConfigError::BadBool {
                    name: path.to_string(),
                    value: v,
                }),
        }
    }

    pub fn get_bool_default(&self, path: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.get_bool(path)?.unwrap_or(default))
    }

    /// Expands `%(name)` references as bhyve's config.c does: the
    /// referenced variable's (expanded) value, nothing when it is unset,
    /// `%()` is dropped, a `%` not starting a complete reference stays
    /// literal, and `\\x` yields `x`. Values without any `%` are returned
    /// untouched (backslashes included), like `expand_config_value`.
    pub fn expand(&self, value: &str) -> String {
        if !value.contains('%') {
            return value.to_string();
        }
        let mut budget = Budget {
            refs: MAX_EXPANSION_REFS,
            bytes: MAX_EXPANDED_LEN,
        };
        self.expand_depth(value, 0, &mut budget)
    }

    fn expand_depth(&self, value: &str, depth: usize, budget: &mut Budget) -> String {
        let mut out = String::with_capacity(value.len().min(budget.bytes));
        let mut rest = value;
        while let Some(c) = rest.chars().next() {
            if budget.bytes < c.len_utf8() {
                break;
            }
            budget.bytes -= c.len_utf8();
            match c {
                '%' => {
                    let reference = if depth >= MAX_EXPANSION_DEPTH || budget.refs == 0 {
                        None
                    } else {
                        rest.strip_prefix("%(")
                            .filter(|inner| !inner.is_empty())
                            .and_then(|inner| inner.find(')').map(|end| (inner, end)))
                    };
                    match reference {
                        None => {
                            out.push('%');
                            rest = &rest[1..];
                        }
                        Some((inner, end)) => {
                            let name = &inner[..end];
                            rest = &inner[end + 1..];
                            budget.refs -= 1;
                            if !name.is_empty() {
                                if let Some(v) = self.root.raw_value(name) {
                                    let e = self.expand_depth(v, depth + 1, budget);
                                    out.push_str(&e);
                                }
                            }
                        }
                    }
                }
                '\\' => {
                    rest = &rest[1..];
                    if let Some(next) = rest.chars().next() {
                        out.push(next);
                        rest = &rest[next.len_utf8()..];
                    }
                }
                _ => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }

    /// Every variable as `path=value` lines, unexpanded, in tree order
    /// (what `-o config.dump=1` prints).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.root.dump_into("", &mut out);
        out
    }
}

/// bhyve's boolean spellings (case-insensitive).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_order() {
        let mut c = Config::new();
        c.set("pci.0.3.0.device", "virtio-blk").unwrap();
        c.set("pci.0.3.0.path", "/img").unwrap();
        c.set("memory.size", "256M").unwrap();
        c.set("pci.0.3.0.device", "ahci").unwrap();
        assert_eq!(c.get("pci.0.3.0.device").as_deref(), Some("ahci"));
        assert_eq!(
            c.dump(),
            "pci.0.3.0.path=/img\npci.0.3.0.device=ahci\nmemory.size=256M\n"
        );
    }

    #[test]
    fn node_and_variable_conflicts() {
        let mut c = Config::new();
        c.set("a.b", "1").unwrap();
        assert_eq!(
            c.set("a.b.c", "2"),
            Err(ConfigError::IsVariable("a.b".into()))
        );
        assert_eq!(c.set("a", "2"), Err(ConfigError::IsNode("a".into())));
        assert!(matches!(c.set("a..b", "1"), Err(ConfigError::BadName(_))));
        assert!(matches!(c.set("", "1"), Err(ConfigError::BadName(_))));
    }

    #[test]
    fn expansion_is_bounded() {
        let mut c = Config::new();
        c.set("a0", "xxxxxxxxxx").unwrap();
        for i in 1..16 {
            c.set(&format!("a{i}"), &format!("%(a{})", i - 1).repeat(10))
                .unwrap();
        }
        // Empty values fan out too: work, not only output, is bounded.
        c.set("e0", "").unwrap();
        for i in 1..16 {
            c.set(&format!("e{i}"), &format!("%(e{})", i - 1).repeat(10))
                .unwrap();
        }
        let t = std::time::Instant::now();
        let v = c.get("a15").unwrap();
        assert!(v.len() <= MAX_EXPANDED_LEN, "{}", v.len());
        assert_eq!(c.get("e15").unwrap().len() % "%(e0)".len(), 0);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn expansion() {
        let mut c = Config::new();
        c.set("name", "vm1").unwrap();
        c.set("disk", "/vms/%(name)/disk.img").unwrap();
        c.set("pct", "100% %(missing)x %() 50\\% %(name").unwrap();
        c.set("loop", "%(loop)").unwrap();
        c.set("bs", "a\\b").unwrap();
        c.set("bs2", "%(bs)\\").unwrap();
        assert_eq!(c.get("disk").unwrap(), "/vms/vm1/disk.img");
        assert_eq!(c.get("pct").unwrap(), "100% x  50% %(name");
        // bhyve follows 16 levels, then keeps the reference literally.
        assert_eq!(c.get("loop").unwrap(), "%(loop)");
        // No '%': returned as stored; nested values are always unescaped.
        assert_eq!(c.get("bs").unwrap(), "a\\b");
        assert_eq!(c.get("bs2").unwrap(), "ab");
        // dump shows raw values
        assert!(c.dump().contains("disk=/vms/%(name)/disk.img"));
    }

    #[test]
    fn booleans() {
        let mut c = Config::new();
        for (v, b) in [
            ("yes", true),
            ("On", true),
            ("1", true),
            ("FALSE", false),
            ("off", false),
            ("0", false),
        ] {
            c.set("x", v).unwrap();
            assert_eq!(c.get_bool("x").unwrap(), Some(b));
        }
        c.set("x", "maybe").unwrap();
        assert!(c.get_bool("x").is_err());
        assert!(c.get_bool_default("nope", true).unwrap());
    }

    #[test]
    fn remove_and_children() {
        let mut c = Config::new();
        c.set("pci.0.1.0.device", "lpc").unwrap();
        c.set("pci.0.3.0.device", "virtio-net").unwrap();
        let names: Vec<_> = c.root().node("pci.0").unwrap().child_names().collect();
        assert_eq!(names, ["1", "3"]);
        assert!(c.root_mut().remove("pci.0.1"));
        assert!(!c.root_mut().remove("pci.0.1"));
        assert!(c.get("pci.0.1.0.device").is_none());
    }
}
