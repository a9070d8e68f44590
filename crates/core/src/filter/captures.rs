//! A route's path captures by name: the groups of a regex (by name and by number) or
//! the parameters of a `match.path` template. Rewrites render them into the upstream
//! path; validation checks them against the types a schema declares.

use crate::route::walk_template;
use gatehouse_config::spec::{CaptureSource, Segment};

pub enum PathCaptures {
    None,
    Regex(regex::Regex),
    Template(Vec<Segment>),
}

impl PathCaptures {
    pub fn new(source: &CaptureSource) -> Self {
        match source {
            CaptureSource::None => PathCaptures::None,
            // The config crate compiled it already; one that fails here captures nothing.
            CaptureSource::Regex(r) => {
                regex::Regex::new(r).map_or(PathCaptures::None, PathCaptures::Regex)
            }
            CaptureSource::Template(s) => PathCaptures::Template(s.clone()),
        }
    }

    /// The captures of `path`, as written in it; `None` when it does not match.
    pub fn of(&self, path: &str) -> Option<Vec<(String, String)>> {
        match self {
            PathCaptures::None => Some(Vec::new()),
            PathCaptures::Regex(re) => {
                let caps = re.captures(path)?;
                let mut out = Vec::new();
                for (i, name) in re.capture_names().enumerate().skip(1) {
                    let text = caps.get(i).map_or("", |m| m.as_str()).to_string();
                    if let Some(n) = name {
                        out.push((n.to_string(), text.clone()));
                    }
                    out.push((i.to_string(), text));
                }
                Some(out)
            }
            PathCaptures::Template(segs) => {
                let mut out = Vec::new();
                walk_template(segs, path, |n, v| out.push((n.to_string(), v.to_string())))
                    .then_some(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_segments_and_the_rest() {
        let c = PathCaptures::Template(vec![
            Segment::Literal("users".into()),
            Segment::Param("id".into()),
            Segment::Literal("posts".into()),
            Segment::Rest("rest".into()),
        ]);
        let got = c.of("/users/42/posts/7/comments").unwrap();
        assert_eq!(
            got,
            vec![
                ("id".to_string(), "42".to_string()),
                ("rest".to_string(), "7/comments".to_string())
            ]
        );
        assert!(c.of("/people/42/posts/7").is_none());
        assert!(c.of("/users//posts/7").is_none());
    }

    #[test]
    fn regexes_give_names_and_numbers() {
        let c = PathCaptures::new(&CaptureSource::Regex(r"^/a/(?P<x>\d+)/(\w+)$".into()));
        let got = c.of("/a/12/b").unwrap();
        assert!(got.contains(&("x".to_string(), "12".to_string())));
        assert!(got.contains(&("1".to_string(), "12".to_string())));
        assert!(got.contains(&("2".to_string(), "b".to_string())));
        assert!(c.of("/a/x/b").is_none());
    }
}
