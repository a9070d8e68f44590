//! Path and query rewriting beyond prefixes: the upstream path rendered from a template
//! over the client path's captures (a regex's groups, or the route's `match.path`
//! parameters: `/users/{id}` -> `/v2/accounts/{id}`), and query parameters removed,
//! renamed, set and added (values are templates too, percent-encoded). A path the
//! regex does not match keeps its path; the query edits still apply.

use super::template::{render, Vars};
use super::{Filter, FilterCtx, FilterFuture, Flow, OriginalUri, Stage};
use gatehouse_config::spec::{CaptureSource, QueryRulesSpec, RewriteSpec, Segment, TemplatePart};
use http::request;
use http::uri::{PathAndQuery, Uri};

pub struct Rewrite {
    source: Source,
    path: Option<Vec<TemplatePart>>,
    query: QueryRulesSpec,
}

enum Source {
    None,
    Regex(regex::Regex),
    Template(Vec<Segment>),
}

impl Rewrite {
    pub fn new(spec: &RewriteSpec) -> Self {
        let source = match &spec.source {
            CaptureSource::None => Source::None,
            CaptureSource::Regex(r) => regex::Regex::new(r).map_or(Source::None, Source::Regex),
            CaptureSource::Template(s) => Source::Template(s.clone()),
        };
        Rewrite {
            source,
            path: spec.path.clone(),
            query: spec.query.clone(),
        }
    }

    /// The captures of `path`, by name and by number; `None` when it does not match.
    fn captures(&self, path: &str) -> Option<Vec<(String, String)>> {
        match &self.source {
            Source::None => Some(Vec::new()),
            Source::Regex(re) => {
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
            Source::Template(segs) => template_params(segs, path),
        }
    }

    /// The query after the edits (`None`: no query at all).
    fn edit_query(&self, query: Option<&str>, vars: &Vars) -> Option<String> {
        let q = &self.query;
        let mut pairs: Vec<(String, String)> = query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        pairs.retain(|(k, _)| !q.remove.contains(k));
        for (from, to) in &q.rename {
            for (k, _) in pairs.iter_mut().filter(|(k, _)| k == from) {
                *k = to.clone();
            }
        }
        let encode = |t: &[TemplatePart]| {
            form_urlencoded::byte_serialize(render(t, vars).as_bytes()).collect::<String>()
        };
        for (name, t) in &q.set {
            pairs.retain(|(k, _)| k != name);
            pairs.push((name.clone(), encode(t)));
        }
        for (name, t) in &q.add {
            pairs.push((name.clone(), encode(t)));
        }
        if pairs.is_empty() {
            return None;
        }
        let joined: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") })
            .collect();
        Some(joined.join("&"))
    }

    fn has_query_rules(&self) -> bool {
        let q = &self.query;
        !(q.remove.is_empty() && q.rename.is_empty() && q.set.is_empty() && q.add.is_empty())
    }
}

/// A `match.path` template's parameters in `path`.
fn template_params(segs: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let mut parts = trimmed.split('/');
    let mut consumed = 0usize;
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            Segment::Rest(n) => {
                out.push((n.clone(), trimmed.get(consumed..).unwrap_or("").to_string()));
                return Some(out);
            }
            Segment::Literal(l) => {
                let p = parts.next()?;
                if p != l {
                    return None;
                }
                consumed += p.len() + 1;
            }
            Segment::Param(n) => {
                let p = parts.next().filter(|p| !p.is_empty())?;
                out.push((n.clone(), p.to_string()));
                consumed += p.len() + 1;
            }
        }
    }
    Some(out)
}

impl Filter for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn wants_original_uri(&self) -> bool {
        self.path.is_some()
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        let original = head
            .extensions
            .get::<OriginalUri>()
            .map(|o| o.0.path().to_string())
            .unwrap_or_else(|| head.uri.path().to_string());
        let params = self.captures(&original);
        let vars = Vars::request(ctx, head, params.as_deref().unwrap_or(&[]));
        let path = match (&self.path, &params) {
            (Some(t), Some(_)) => render(t, &vars),
            _ => head.uri.path().to_string(),
        };
        let query = if self.has_query_rules() {
            self.edit_query(head.uri.query(), &vars)
        } else {
            head.uri.query().map(str::to_string)
        };
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        match PathAndQuery::try_from(pq) {
            Ok(pq) => {
                let mut parts = head.uri.clone().into_parts();
                parts.path_and_query = Some(pq);
                if let Ok(u) = Uri::from_parts(parts) {
                    head.uri = u;
                }
            }
            Err(e) => {
                tracing::debug!(route = ctx.route, error = %e, "rewritten path is not a valid URI path; kept the original")
            }
        }
        Box::pin(std::future::ready(Flow::Continue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_params_take_segments_and_the_rest() {
        let segs = vec![
            Segment::Literal("users".into()),
            Segment::Param("id".into()),
            Segment::Rest("rest".into()),
        ];
        let got = template_params(&segs, "/users/42/posts/7").unwrap();
        assert_eq!(
            got,
            [
                ("id".into(), "42".into()),
                ("rest".into(), "posts/7".into())
            ]
        );
        assert!(template_params(&segs, "/people/42").is_none());
    }
}
