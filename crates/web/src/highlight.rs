//! Syntax highlighting with CSS classes (syntect's bundled grammars), one
//! HTML fragment per line so the page can anchor every line.

use std::sync::OnceLock;

use syntect::html::{line_tokens_to_classed_spans, ClassStyle};
use syntect::parsing::{ParseState, ScopeStack, SyntaxSet};
use syntect::util::LinesWithEndings;

/// Files larger than this, or with longer lines, are shown without
/// highlighting (grammars are regular expressions: bounded input, bounded
/// time).
pub const MAX_BYTES: usize = 256 << 10;
const MAX_LINE: usize = 2_000;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// The stylesheet for the classes [`lines`] emits.
pub fn css() -> &'static str {
    static CSS: OnceLock<String> = OnceLock::new();
    CSS.get_or_init(|| {
        let themes = syntect::highlighting::ThemeSet::load_defaults();
        themes
            .themes
            .get("InspiredGitHub")
            .and_then(|t| {
                syntect::html::css_for_theme_with_class_style(t, ClassStyle::SpacedPrefixed { prefix: "hl-" }).ok()
            })
            .unwrap_or_default()
    })
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` (the file `name`) as one escaped, highlighted HTML fragment per
/// line; plain escaped lines when no grammar fits or the file is too big.
pub fn lines(name: &str, text: &str) -> Vec<String> {
    let plain = || text.lines().map(escape).collect();
    if text.len() > MAX_BYTES || text.lines().any(|l| l.len() > MAX_LINE) {
        return plain();
    }
    let set = syntaxes();
    let extension = name.rsplit('.').next().unwrap_or("");
    let syntax = set
        .find_syntax_by_extension(extension)
        .or_else(|| set.find_syntax_by_extension(name))
        .or_else(|| text.lines().next().and_then(|first| set.find_syntax_by_first_line(first)));
    let Some(syntax) = syntax else { return plain() };
    let style = ClassStyle::SpacedPrefixed { prefix: "hl-" };
    let mut state = ParseState::new(syntax);
    let mut stack = ScopeStack::new();
    let mut out = Vec::new();
    for line in LinesWithEndings::from(text) {
        // Reopen the spans still open from earlier lines, and close all at
        // the end: every line's fragment stands alone (line anchors).
        let mut html: String =
            stack.as_slice().iter().map(|scope| format!("<span class=\"{}\">", classes(*scope))).collect();
        let Ok(ops) = state.parse_line(line, set) else { return plain() };
        let Ok((spans, _)) = line_tokens_to_classed_spans(line, &ops, style, &mut stack) else { return plain() };
        html.push_str(&spans);
        let opened = html.matches("<span").count();
        let closed = html.matches("</span>").count();
        for _ in closed..opened {
            html.push_str("</span>");
        }
        let html = html.replace('\n', "");
        out.push(html);
    }
    out
}

fn classes(scope: syntect::parsing::Scope) -> String {
    scope.build_string().split('.').map(|atom| format!("hl-{atom}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_and_escapes() {
        let lines = lines("main.rs", "fn main() { let x = \"<b>\"; }\n// done\n");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("hl-") && lines[0].contains("&lt;b&gt;") && !lines[0].contains("<b>"), "{lines:?}");
        let plain = super::lines("x.unknown-ext", "<script>\n");
        assert_eq!(plain, ["&lt;script&gt;"]);
        // A comment across lines: each line's fragment is balanced.
        for line in super::lines("a.c", "/* one\ntwo */ int x;\n") {
            assert_eq!(line.matches("<span").count(), line.matches("</span>").count(), "{line}");
        }
    }
}
