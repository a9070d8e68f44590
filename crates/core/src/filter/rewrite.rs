//! Path and query rewriting beyond prefixes: the upstream path rendered from a template
//! over the client path's captures (a regex's groups, or the route's `match.path`
//! parameters: `/users/{id}` -> `/v2/accounts/{id}`), and query parameters removed,
//! renamed, set and added (values are templates too, percent-encoded). A path the
//! regex does not match keeps its path; the query edits still apply.

use super::captures::PathCaptures;
use super::template::{render, Vars};
use super::{client_uri, Filter, FilterCtx, FilterFuture, Flow, Stage};
use gatehouse_config::spec::{QueryRulesSpec, RewriteSpec, TemplatePart};
use http::request;
use http::uri::{PathAndQuery, Uri};

pub struct Rewrite {
    captures: PathCaptures,
    path: Option<Vec<TemplatePart>>,
    query: QueryRulesSpec,
}

impl Rewrite {
    pub fn new(spec: &RewriteSpec) -> Self {
        Rewrite {
            captures: PathCaptures::new(&spec.source),
            path: spec.path.clone(),
            query: spec.query.clone(),
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
        let params = self.captures.of(client_uri(head).path());
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
        FilterFuture::ready(Flow::Continue)
    }
}
