//! `COPY/ADD --chmod`: an octal mode (`0644`, at most `07777`) or a symbolic one (`go-w`, `u=rw,g=r`,
//! `a+X`), as BuildKit accepts them.
//!
//! The symbolic form follows BSD `setmode(3)` with a zero umask, which is what BuildKit applies
//! (tonistiigi/dchapes-mode): clauses `[ugoa]*` then one or more `[+-=]` actions of `rwxXst` bits or a
//! single class to copy (`g=u`). Hand-written: no crate implements setmode's rules, and the grammar is
//! small.

/// Why a `--chmod` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// A numeric value that is not octal or is above 07777 (BuildKit's wording).
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    NotOctal(String),
    /// A symbolic value that does not parse.
    #[error("invalid chmod parameter: '{0}': invalid syntax (expected an octal mode or a symbolic one like go-w)")]
    Syntax(String),
}

/// A parsed `--chmod` value and its text (history shows the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chmod {
    /// The value as written (after expansion).
    pub text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Octal(u32),
    Symbolic(Vec<Action>),
}

/// One `who op perms` action of a symbolic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Action {
    /// Permission bits the action may touch (0 = not given: every class, as with a zero umask).
    who: u32,
    op: char,
    /// `rwxst` bits, spread over all three classes.
    perm: u32,
    /// `X`: execute, only for directories or files something can already execute.
    exec_if: bool,
    /// `u`, `g` or `o`: copy that class's current bits.
    copy: Option<char>,
}

const SETID: u32 = 0o6000;
const STICKY: u32 = 0o1000;
const STANDARD: u32 = 0o6777;

impl Chmod {
    /// Parses `text` like BuildKit: octal first (values above 07777 refused), else symbolic.
    pub fn parse(text: &str) -> Result<Chmod, ChmodError> {
        let kind = match u32::from_str_radix(text, 8) {
            Ok(mode) if mode <= 0o7777 => Kind::Octal(mode),
            Ok(_) => return Err(ChmodError::NotOctal(text.to_string())),
            // A value starting with a digit is meant to be a number (BuildKit keeps its old message).
            Err(_) if text.starts_with(|c: char| c.is_ascii_digit()) => {
                return Err(ChmodError::NotOctal(text.to_string()));
            }
            Err(_) => Kind::Symbolic(parse_symbolic(text).ok_or_else(|| ChmodError::Syntax(text.to_string()))?),
        };
        Ok(Chmod { text: text.to_string(), kind })
    }

    /// The mode of a numeric `--chmod`: BuildKit also gives it to the directories a COPY creates (a
    /// symbolic one leaves them 0755).
    pub fn octal(&self) -> Option<u32> {
        match &self.kind {
            Kind::Octal(m) => Some(*m),
            Kind::Symbolic(_) => None,
        }
    }

    /// The permission bits (`& 0o7777`) a file or directory with `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.kind {
            Kind::Octal(m) => *m,
            Kind::Symbolic(actions) => apply_symbolic(actions, mode & 0o7777, is_dir),
        }
    }
}

fn who_bits(c: char) -> Option<u32> {
    match c {
        'u' => Some(0o4700),
        'g' => Some(0o2070),
        'o' => Some(0o0007),
        'a' => Some(STANDARD),
        _ => None,
    }
}

fn parse_symbolic(text: &str) -> Option<Vec<Action>> {
    let mut actions = Vec::new();
    for clause in text.split(',') {
        let mut chars = clause.chars().peekable();
        let mut who = 0;
        while let Some(bits) = chars.peek().and_then(|c| who_bits(*c)) {
            who |= bits;
            chars.next();
        }
        // At least one action per clause; more may follow (`u+r-x`).
        let mut any = false;
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return None;
            }
            any = true;
            let mut perm = 0;
            let mut exec_if = false;
            let mut copy = None;
            while let Some(&c) = chars.peek() {
                match c {
                    'r' => perm |= 0o444,
                    'w' => perm |= 0o222,
                    'x' => perm |= 0o111,
                    'X' if op == '-' => perm |= 0o111,
                    'X' => exec_if = true,
                    's' if who == 0 || who & !0o007 != 0 => perm |= SETID,
                    't' if who == 0 || who & !0o007 != 0 => perm |= STICKY,
                    's' | 't' => {}
                    'u' | 'g' | 'o' if perm == 0 && !exec_if && copy.is_none() => copy = Some(c),
                    _ => break,
                }
                chars.next();
            }
            actions.push(Action { who, op, perm, exec_if, copy });
        }
        if !any {
            return None;
        }
    }
    Some(actions)
}

fn apply_symbolic(actions: &[Action], original: u32, is_dir: bool) -> u32 {
    let mut mode = original;
    for a in actions {
        // Sticky is only touched when it was asked for by name.
        let who = if a.who == 0 { STANDARD | STICKY } else { a.who | (a.perm & STICKY) };
        let mut bits = a.perm;
        if a.exec_if && (is_dir || original & 0o111 != 0) {
            bits |= 0o111;
        }
        if let Some(class) = a.copy {
            let value = match class {
                'u' => (mode >> 6) & 7,
                'g' => (mode >> 3) & 7,
                _ => mode & 7,
            };
            bits = value * 0o111;
        }
        let bits = bits & who;
        match a.op {
            '+' => mode |= bits,
            '-' => mode &= !bits,
            _ => mode = (mode & !(who & (STANDARD | STICKY))) | bits,
        }
    }
    mode & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(text: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(text).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_values_and_buildkits_refusals() {
        assert_eq!(sym("0644", 0o777, false), 0o644);
        assert_eq!(sym("777", 0o600, true), 0o777);
        assert_eq!(sym("0", 0o600, false), 0);
        for bad in ["64a", "10000", "8"] {
            assert_eq!(
                Chmod::parse(bad).unwrap_err().to_string(),
                format!("invalid chmod parameter: '{bad}'. it should be octal string and between 0 and 07777")
            );
        }
        assert!(matches!(Chmod::parse("q+r"), Err(ChmodError::Syntax(_))));
        assert!(matches!(Chmod::parse("u"), Err(ChmodError::Syntax(_))));
    }

    /// The cases of BuildKit's testChmodNonOctal, against what chmod(1) gives.
    #[test]
    fn symbolic_modes_as_chmod_applies_them() {
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u=rw,g=r,o=r", 0o666, false), 0o644);
        assert_eq!(sym("a+X", 0o666, false), 0o666, "X needs a directory or an executable file");
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("go-w", 0o124, true), 0o104);
        assert_eq!(sym("u+rw,g+r,o-x,o+w", 0o124, true), 0o766);
        assert_eq!(sym("a+X", 0o124, true), 0o135);
    }

    #[test]
    fn more_symbolic_forms() {
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("u+s,+t", 0o755, true), 0o5755);
        assert_eq!(sym("o=", 0o777, false), 0o770);
        assert_eq!(sym("u+r-x", 0o700, false), 0o600);
        assert_eq!(sym("=r", 0o4755, false), 0o444);
    }
}
