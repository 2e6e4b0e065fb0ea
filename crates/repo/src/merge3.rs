//! Three-way merges of text files, line by line, as `git merge-file` does
//! in spirit: the changes each side made to the common base are applied
//! together; where both sides changed the same base lines differently (or
//! inserted different lines at the same place), the merge conflicts and
//! the conflicting hunks are reported instead.

use similar::{capture_diff_slices, Algorithm, DiffOp};

/// One side's change to the base: base lines `start..end` become `lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk<'a> {
    start: usize,
    end: usize,
    lines: Vec<&'a str>,
}

/// A region both sides changed differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// 1-based first base line and the number of base lines involved.
    pub base_line: usize,
    pub base_len: usize,
    pub base: String,
    pub ours: String,
    pub theirs: String,
}

/// Files larger than this are not merged by content (a conflict).
pub const MAX_BYTES: usize = 4 << 20;

/// Merges `ours` and `theirs`, both descended from `base`. `Ok` is the
/// merged text; `Err` the conflicting regions.
pub fn merge(base: &str, ours: &str, theirs: &str) -> Result<String, Vec<Conflict>> {
    let b: Vec<&str> = base.split_inclusive('\n').collect();
    let o: Vec<&str> = ours.split_inclusive('\n').collect();
    let t: Vec<&str> = theirs.split_inclusive('\n').collect();
    let ours_hunks = hunks(&b, &o);
    let theirs_hunks = hunks(&b, &t);
    let mut out = String::with_capacity(ours.len().max(theirs.len()));
    let mut conflicts = Vec::new();
    let mut pos = 0;
    let (mut i, mut j) = (0, 0);
    while i < ours_hunks.len() || j < theirs_hunks.len() {
        let next_ours = ours_hunks.get(i);
        let next_theirs = theirs_hunks.get(j);
        match (next_ours, next_theirs) {
            (Some(x), Some(y)) if x == y => {
                // The same change on both sides: once.
                apply(&mut out, &b, &mut pos, x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if overlap(x, y) => {
                // Grow the region while hunks of either side touch it.
                let (mut start, mut end) = (x.start.min(y.start), x.end.max(y.end));
                let (mut oi, mut tj) = (i + 1, j + 1);
                loop {
                    let region = Hunk { start, end, lines: Vec::new() };
                    if let Some(h) = ours_hunks.get(oi).filter(|h| overlap(h, &region)) {
                        end = end.max(h.end);
                        start = start.min(h.start);
                        oi += 1;
                    } else if let Some(h) = theirs_hunks.get(tj).filter(|h| overlap(h, &region)) {
                        end = end.max(h.end);
                        start = start.min(h.start);
                        tj += 1;
                    } else {
                        break;
                    }
                }
                let side = |hs: &[Hunk<'_>]| -> String {
                    let mut text = String::new();
                    let mut at = start;
                    for h in hs {
                        text.extend(b[at..h.start].iter().copied());
                        text.extend(h.lines.iter().copied());
                        at = h.end;
                    }
                    text.extend(b[at..end].iter().copied());
                    text
                };
                let ours_text = side(&ours_hunks[i..oi]);
                let theirs_text = side(&theirs_hunks[j..tj]);
                out.extend(b[pos..start].iter().copied());
                if ours_text == theirs_text {
                    out.push_str(&ours_text);
                } else {
                    conflicts.push(Conflict {
                        base_line: start + 1,
                        base_len: end - start,
                        base: b[start..end].concat(),
                        ours: ours_text,
                        theirs: theirs_text,
                    });
                }
                pos = end;
                i = oi;
                j = tj;
            }
            (Some(x), Some(y)) => {
                if x.start <= y.start {
                    apply(&mut out, &b, &mut pos, x);
                    i += 1;
                } else {
                    apply(&mut out, &b, &mut pos, y);
                    j += 1;
                }
            }
            (Some(x), None) => {
                apply(&mut out, &b, &mut pos, x);
                i += 1;
            }
            (None, Some(y)) => {
                apply(&mut out, &b, &mut pos, y);
                j += 1;
            }
            (None, None) => unreachable!("the loop runs while a side has hunks"),
        }
    }
    out.extend(b[pos..].iter().copied());
    if conflicts.is_empty() {
        Ok(out)
    } else {
        Err(conflicts)
    }
}

fn apply(out: &mut String, base: &[&str], pos: &mut usize, h: &Hunk<'_>) {
    out.extend(base[*pos..h.start].iter().copied());
    out.extend(h.lines.iter().copied());
    *pos = h.end;
}

/// Whether two changes touch the same base lines, or insert at the same
/// place (where their order would be a guess).
fn overlap(x: &Hunk<'_>, y: &Hunk<'_>) -> bool {
    if x.start < y.end && y.start < x.end {
        return true;
    }
    let x_insert = x.start == x.end;
    let y_insert = y.start == y.end;
    (x_insert && (y.start..=y.end).contains(&x.start) && (y_insert || x.start > y.start && x.start < y.end))
        || (y_insert && (x.start..=x.end).contains(&y.start) && (x_insert || y.start > x.start && y.start < x.end))
}

/// The changes from `base` to `side`, in base order.
fn hunks<'a>(base: &[&'a str], side: &[&'a str]) -> Vec<Hunk<'a>> {
    let ops = capture_diff_slices(Algorithm::Myers, base, side);
    let mut out: Vec<Hunk<'a>> = Vec::new();
    for op in ops {
        let (start, end, lines) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete { old_index, old_len, .. } => (old_index, old_index + old_len, Vec::new()),
            DiffOp::Insert { old_index, new_index, new_len } => {
                (old_index, old_index, side[new_index..new_index + new_len].to_vec())
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                (old_index, old_index + old_len, side[new_index..new_index + new_len].to_vec())
            }
        };
        // Adjacent operations (a delete next to an insert) are one change.
        match out.last_mut() {
            Some(last) if last.end == start => {
                last.end = end;
                last.lines.extend(lines);
            }
            _ => out.push(Hunk { start, end, lines }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";

    #[test]
    fn changes_in_different_places_merge() {
        let ours = BASE.replace("two\n", "TWO\n");
        let theirs = BASE.replace("six\n", "SIX\n");
        assert_eq!(merge(BASE, &ours, &theirs).unwrap(), "one\nTWO\nthree\nfour\nfive\nSIX\nseven\n");
        // Insertions and deletions too, and the same change on both sides.
        let ours = BASE.replace("three\n", "");
        let theirs = BASE.replace("five\n", "five\nfive and a half\n").replace("three\n", "");
        assert_eq!(merge(BASE, &ours, &theirs).unwrap(), "one\ntwo\nfour\nfive\nfive and a half\nsix\nseven\n");
        assert_eq!(merge(BASE, BASE, BASE).unwrap(), BASE);
        assert_eq!(merge(BASE, &ours, BASE).unwrap(), ours);
    }

    #[test]
    fn overlapping_changes_conflict_with_their_hunks() {
        let ours = BASE.replace("four\n", "FOUR\n");
        let theirs = BASE.replace("four\n", "4\n");
        let conflicts = merge(BASE, &ours, &theirs).unwrap_err();
        assert_eq!(
            conflicts,
            [Conflict {
                base_line: 4,
                base_len: 1,
                base: "four\n".into(),
                ours: "FOUR\n".into(),
                theirs: "4\n".into()
            }]
        );
        // Different insertions at the same place conflict too.
        let ours = BASE.replace("seven\n", "seven\neight\n");
        let theirs = BASE.replace("seven\n", "seven\nacht\n");
        assert_eq!(merge(BASE, &ours, &theirs).unwrap_err().len(), 1);
    }

    #[test]
    fn adjacent_lines_and_missing_final_newlines_merge() {
        assert_eq!(merge("a\nb", "A\nb", "a\nB").unwrap(), "A\nB");
        // An insertion right before a changed line is no overlap.
        assert_eq!(merge("a\nb\n", "x\na\nb\n", "A\nb\n").unwrap(), "x\nA\nb\n");
    }
}
