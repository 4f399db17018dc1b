//! POSIX `getopt(3)` as FreeBSD implements it: option letters combine
//! (`-AHP`), an option argument is the rest of the word or the next word
//! (even one starting with `-`), `--` ends the options, and scanning stops
//! at the first operand (no GNU-style permutation).

/// What one `getopt` step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptItem {
    /// A known option and, for options declared with `:`, its argument.
    Opt(char, Option<String>),
    /// getopt's `?`: an unknown option letter, or a missing argument. The
    /// text is FreeBSD getopt's diagnostic (without the program name).
    Error(String),
}

pub struct Getopt<'a> {
    args: &'a [String],
    optstring: &'a str,
    /// Index of the word being scanned (getopt's `optind`).
    optind: usize,
    /// Byte offset inside `args[optind]` of the next option letter; 0 when
    /// the next word has not been started.
    pos: usize,
    done: bool,
}

impl<'a> Getopt<'a> {
    pub fn new(args: &'a [String], optstring: &'a str) -> Self {
        Self {
            args,
            optstring,
            optind: 0,
            pos: 0,
            done: false,
        }
    }

    /// The operands left once [`Iterator::next`] returned `None`.
    pub fn operands(&self) -> &'a [String] {
        &self.args[self.optind.min(self.args.len())..]
    }

    /// `Some(takes_argument)` when `c` is an option letter.
    fn spec(&self, c: char) -> Option<bool> {
        if c == ':' {
            return None;
        }
        let i = self.optstring.find(c)?;
        Some(self.optstring[i + c.len_utf8()..].starts_with(':'))
    }
}

impl Iterator for Getopt<'_> {
    type Item = GetoptItem;

    fn next(&mut self) -> Option<GetoptItem> {
        if self.done {
            return None;
        }
        if self.pos == 0 {
            let Some(word) = self.args.get(self.optind) else {
                self.done = true;
                return None;
            };
            if word == "--" {
                self.optind += 1;
                self.done = true;
                return None;
            }
            if !word.starts_with('-') || word == "-" {
                self.done = true;
                return None;
            }
            self.pos = 1;
        }
        let word = &self.args[self.optind];
        let c = word[self.pos..].chars().next().expect("pos inside word");
        self.pos += c.len_utf8();
        let at_end = self.pos >= word.len();
        let item = match self.spec(c) {
            None => GetoptItem::Error(format!("illegal option -- {c}")),
            Some(false) => GetoptItem::Opt(c, None),
            Some(true) => {
                if !at_end {
                    let arg = word[self.pos..].to_string();
                    self.optind += 1;
                    self.pos = 0;
                    return Some(GetoptItem::Opt(c, Some(arg)));
                }
                match self.args.get(self.optind + 1) {
                    Some(arg) => {
                        self.optind += 2;
                        self.pos = 0;
                        return Some(GetoptItem::Opt(c, Some(arg.clone())));
                    }
                    None => {
                        self.optind += 1;
                        self.pos = 0;
                        return Some(GetoptItem::Error(format!(
                            "option requires an argument -- {c}"
                        )));
                    }
                }
            }
        };
        if at_end {
            self.optind += 1;
            self.pos = 0;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (Vec<GetoptItem>, Vec<String>) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut g = Getopt::new(&args, "abc:d:");
        let items: Vec<_> = g.by_ref().collect();
        (items, g.operands().to_vec())
    }

    fn opt(c: char, a: Option<&str>) -> GetoptItem {
        GetoptItem::Opt(c, a.map(str::to_string))
    }

    #[test]
    fn combined_and_arguments() {
        let (items, ops) = run(&["-ab", "-c2", "-d", "-x", "vm"]);
        assert_eq!(
            items,
            [
                opt('a', None),
                opt('b', None),
                opt('c', Some("2")),
                opt('d', Some("-x"))
            ]
        );
        assert_eq!(ops, ["vm"]);
        let (items, _) = run(&["-bc", "v"]);
        assert_eq!(items, [opt('b', None), opt('c', Some("v"))]);
    }

    #[test]
    fn stops_at_operand_and_double_dash() {
        let (items, ops) = run(&["vm", "-a"]);
        assert!(items.is_empty());
        assert_eq!(ops, ["vm", "-a"]);
        let (items, ops) = run(&["-a", "--", "-b"]);
        assert_eq!(items, [opt('a', None)]);
        assert_eq!(ops, ["-b"]);
        let (_, ops) = run(&["-", "x"]);
        assert_eq!(ops, ["-", "x"]);
    }

    #[test]
    fn errors() {
        let (items, _) = run(&["-az"]);
        assert_eq!(items[1], GetoptItem::Error("illegal option -- z".into()));
        let (items, ops) = run(&["-c"]);
        assert_eq!(
            items,
            [GetoptItem::Error("option requires an argument -- c".into())]
        );
        assert!(ops.is_empty());
        let (items, _) = run(&["-:"]);
        assert!(matches!(items[0], GetoptItem::Error(_)));
    }
}
