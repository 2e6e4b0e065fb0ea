//! READMEs: CommonMark rendered to HTML, then sanitized, so that a
//! repository cannot put scripts, styles or event handlers on a page.

/// READMEs larger than this are shown as plain text instead.
pub const MAX_BYTES: usize = 512 << 10;

/// `text` as sanitized HTML. Links keep `rel="noopener noreferrer"`;
/// relative links stay relative to the page.
pub fn render(text: &str) -> String {
    let text = if text.len() > MAX_BYTES { &text[..floor_char(text, MAX_BYTES)] } else { text };
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    options.insert(pulldown_cmark::Options::ENABLE_STRIKETHROUGH);
    options.insert(pulldown_cmark::Options::ENABLE_TASKLISTS);
    let parser = pulldown_cmark::Parser::new_ext(text, options);
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    ammonia::Builder::default().link_rel(Some("noopener noreferrer")).clean(&html).to_string()
}

fn floor_char(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_scripts_are_not() {
        let html =
            render("# Title\n\n*hi* <script>alert(1)</script> <img src=x onerror=alert(1)>\n[x](javascript:alert(1))");
        assert!(html.contains("<h1>Title</h1>") && html.contains("<em>hi</em>"), "{html}");
        assert!(!html.contains("<script") && !html.contains("onerror") && !html.contains("javascript:"), "{html}");
    }
}
