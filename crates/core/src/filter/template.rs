//! Template strings (`"{client_ip}"`, `"v2-{header.x-id}"`) filled in per request, for
//! JSON body transforms. The config crate parses them; this renders them.

use super::FilterCtx;
use crate::consumer::Caller;
use gatehouse_config::spec::{TemplatePart, TemplateVar};
use http::HeaderMap;
use std::fmt::Write;

/// What a template may read besides the filter context.
pub struct Vars<'a> {
    pub ctx: &'a FilterCtx<'a>,
    pub method: Option<&'a http::Method>,
    pub uri: Option<&'a http::Uri>,
    /// The request's headers on the request side, the response's on the response side.
    pub headers: &'a HeaderMap,
    pub caller: Option<&'a Caller>,
    /// A rewrite's captures, by name and number.
    pub params: &'a [(String, String)],
}

impl<'a> Vars<'a> {
    /// What a request-side template reads: the request head and the caller auth found.
    pub fn request(
        ctx: &'a FilterCtx<'a>,
        head: &'a http::request::Parts,
        params: &'a [(String, String)],
    ) -> Self {
        Vars {
            ctx,
            method: Some(&head.method),
            uri: Some(&head.uri),
            headers: &head.headers,
            caller: head.extensions.get::<Caller>(),
            params,
        }
    }

    /// What a response-side template reads: the response's headers, and the caller
    /// auth found (put on the response for filters that read it).
    pub fn response(
        ctx: &'a FilterCtx<'a>,
        headers: &'a HeaderMap,
        extensions: &'a http::Extensions,
    ) -> Self {
        Vars {
            ctx,
            method: None,
            uri: None,
            headers,
            caller: extensions.get::<Caller>(),
            params: &[],
        }
    }
}

/// Fills in `parts`; a value that is not there renders as nothing.
pub fn render(parts: &[TemplatePart], v: &Vars) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Var(var) => var_into(&mut out, var, v),
        }
    }
    out
}

fn var_into(out: &mut String, var: &TemplateVar, v: &Vars) {
    match var {
        TemplateVar::ClientIp => {
            let _ = write!(out, "{}", v.ctx.client_ip);
        }
        TemplateVar::RequestId => out.push_str(v.ctx.request_id.to_str().unwrap_or_default()),
        TemplateVar::Route => out.push_str(v.ctx.route),
        TemplateVar::Consumer => {
            if let Some(n) = v.caller.and_then(|c| c.0.consumer_name()) {
                out.push_str(n);
            }
        }
        TemplateVar::Method => out.push_str(v.method.map_or("", |m| m.as_str())),
        TemplateVar::Path => out.push_str(v.uri.map_or("", |u| u.path())),
        TemplateVar::Date => {
            let _ = write!(out, "{}", jiff::Timestamp::now());
        }
        TemplateVar::Header(h) => {
            if let Some(s) = v.headers.get(h.as_str()).and_then(|x| x.to_str().ok()) {
                out.push_str(s);
            }
        }
        TemplateVar::Query(q) => {
            let first = v
                .uri
                .and_then(|u| u.query())
                .and_then(|query| crate::http::query::values(query, q).next());
            out.push_str(first.unwrap_or_default());
        }
        TemplateVar::Param(name) => {
            if let Some((_, v)) = v.params.iter().find(|(n, _)| n == name) {
                out.push_str(v);
            }
        }
        TemplateVar::Claim(c) => {
            let claim = v
                .caller
                .and_then(|k| k.0.claims.as_ref())
                .and_then(|m| m.get(c));
            match claim {
                Some(serde_json::Value::String(s)) => out.push_str(s),
                Some(other) => {
                    let _ = write!(out, "{other}");
                }
                None => {}
            }
        }
    }
}
