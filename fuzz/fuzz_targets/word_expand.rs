//! Shell-word expansion (`$a`, `${a:-b}`, patterns, quotes, escapes) with any word and any variables:
//! errors, never panics; an expansion without `$`, quotes or escapes is the word itself.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    backtick_escape: bool,
    word: String,
    vars: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let escape = if input.backtick_escape { '`' } else { '\\' };
    let expander = kiln::dockerfile::shell::Expander::new(escape);
    let vars = input.vars;
    let single = expander.word(&input.word, &vars);
    let _ = expander.words(&input.word, &vars);
    let _ = expander.word_with_matches(&input.word, &vars);
    let _ = expander.heredoc(&input.word, &vars);
    let plain = !input.word.contains(['$', '\'', '"', escape]);
    if plain {
        assert_eq!(single.ok().as_deref(), Some(input.word.as_str()), "a plain word expands to itself");
    }
});
