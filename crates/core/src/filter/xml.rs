//! XML to JSON and JSON to XML bodies, on requests or responses (a legacy XML upstream
//! behind a JSON API). quick-xml reads the XML; the mapping is ours and fixed:
//! an element is a key; its attributes are `@name` keys, its text `#text` when it also
//! has attributes or children (else the text itself, or null when empty); repeated
//! children become an array; values stay strings. JSON to XML is the inverse, numbers
//! and booleans written as text, with one top key as the root element or else
//! `xml_root`. A DTD's entities are never expanded (only XML's five and character
//! references), so no document can make the gateway expand itself.

use super::json::{is_json, says};
use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{local_reply, ErrorKind, ProxyError};
use bytes::Bytes;
use gatehouse_config::spec::{xml_name, BodySide, XmlDirection};
use http::{header, request, response, HeaderMap, HeaderValue};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

/// How deep elements may nest; deeper documents are refused.
const MAX_DEPTH: usize = 256;

pub struct XmlConvert {
    side: BodySide,
    direction: XmlDirection,
    root: String,
}

impl XmlConvert {
    pub fn new(side: BodySide, direction: XmlDirection, root: &str) -> Self {
        XmlConvert {
            side,
            direction,
            root: root.to_string(),
        }
    }

    /// Whether a message's body is the kind this filter converts from.
    fn applies(&self, headers: &HeaderMap) -> bool {
        match self.direction {
            XmlDirection::XmlToJson => is_xml(headers),
            XmlDirection::JsonToXml => is_json(headers),
        }
    }

    /// Converts `body` and says so in `Content-Type`; `Err` says why it could not.
    fn convert(&self, headers: &mut HeaderMap, body: &mut Bytes) -> Result<(), String> {
        let (out, ct) = match self.direction {
            XmlDirection::XmlToJson => {
                let text =
                    std::str::from_utf8(body).map_err(|_| "the XML is not UTF-8".to_string())?;
                let doc = xml_to_json(text)?;
                let out = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
                (out, "application/json")
            }
            XmlDirection::JsonToXml => {
                let doc: Value =
                    serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))?;
                (
                    json_to_xml(&doc, &self.root)?.into_bytes(),
                    "application/xml; charset=utf-8",
                )
            }
        };
        *body = Bytes::from(out);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        Ok(())
    }
}

/// Whether a message's body is XML (`application/xml`, `text/xml`, `+xml`) without a
/// content coding.
fn is_xml(headers: &HeaderMap) -> bool {
    says(headers, |essence| {
        essence == "application/xml"
            || essence == "text/xml"
            || (essence.starts_with("application/") && essence.ends_with("+xml"))
    })
}

/// An element being read: its name, attributes, children so far and text.
struct Open {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<(String, Value)>,
    text: String,
}

impl Open {
    fn of(e: &quick_xml::events::BytesStart) -> Result<Open, String> {
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            attrs.push((a.key.0.to_string(), v.into_owned()));
        }
        Ok(Open {
            name: e.name().0.to_string(),
            attrs,
            children: Vec::new(),
            text: String::new(),
        })
    }

    fn into_value(self) -> Value {
        let text = self.text.trim();
        if self.attrs.is_empty() && self.children.is_empty() {
            return if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_string())
            };
        }
        let mut m = Map::new();
        for (k, v) in self.attrs {
            m.insert(format!("@{k}"), Value::String(v));
        }
        for (k, v) in self.children {
            match m.get_mut(&k) {
                Some(Value::Array(list)) => list.push(v),
                Some(first) => {
                    let one = std::mem::take(first);
                    *first = Value::Array(vec![one, v]);
                }
                None => {
                    m.insert(k, v);
                }
            }
        }
        if !text.is_empty() {
            m.insert("#text".into(), Value::String(text.to_string()));
        }
        Value::Object(m)
    }
}

/// An XML document as JSON: `{ root: ... }`.
pub fn xml_to_json(text: &str) -> Result<Value, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut close = |n: Open, stack: &mut Vec<Open>| -> Result<(), String> {
        let name = n.name.clone();
        let v = n.into_value();
        match stack.last_mut() {
            Some(parent) => parent.children.push((name, v)),
            None if root.is_some() => return Err("more than one root element".into()),
            None => root = Some((name, v)),
        }
        Ok(())
    };
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {at}: {e}"))?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nest deeper than {MAX_DEPTH}"));
                }
                stack.push(Open::of(&e)?);
            }
            Event::Empty(e) => close(Open::of(&e)?, &mut stack)?,
            Event::End(_) => {
                let n = stack.pop().ok_or("an end tag with no start")?;
                close(n, &mut stack)?;
            }
            Event::Text(t) => text_into(&mut stack, &t.xml10_content())?,
            Event::CData(c) => text_into(&mut stack, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("entity `&{};` is not one XML defines", &*r))?
                        .to_string(),
                };
                text_into(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and a DOCTYPE carry no data.
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("element `{}` is not closed", open.name));
    }
    let (name, v) = root.ok_or("no root element")?;
    Ok(Value::Object([(name, v)].into_iter().collect()))
}

fn text_into(stack: &mut [Open], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// A JSON document as XML: one top key is the root element, else `root` wraps it.
pub fn json_to_xml(doc: &Value, root: &str) -> Result<String, String> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    match doc {
        Value::Object(m) if m.len() == 1 && !m.keys().any(|k| k.starts_with(['@', '#'])) => {
            if let Some((k, v)) = m.iter().next() {
                element(&mut out, k, v, 0)?;
            }
        }
        Value::Array(items) => {
            let wrapped = Value::Object(
                [("item".to_string(), Value::Array(items.clone()))]
                    .into_iter()
                    .collect(),
            );
            element(&mut out, root, &wrapped, 0)?;
        }
        other => element(&mut out, root, other, 0)?,
    }
    Ok(out)
}

fn element(out: &mut String, name: &str, v: &Value, depth: usize) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Err(format!("values nest deeper than {MAX_DEPTH}"));
    }
    if !xml_name(name) {
        return Err(format!("`{name}` cannot be an XML element name"));
    }
    match v {
        Value::Array(items) => {
            for item in items {
                element(out, name, item, depth + 1)?;
            }
        }
        Value::Object(m) => {
            out.push('<');
            out.push_str(name);
            for (k, a) in m.iter().filter(|(k, _)| k.starts_with('@')) {
                let attr = &k[1..];
                if !xml_name(attr) {
                    return Err(format!("`{attr}` cannot be an XML attribute name"));
                }
                let text = scalar(a).ok_or_else(|| {
                    format!("attribute `{attr}` must be a string, number or boolean")
                })?;
                out.push_str(&format!(
                    " {attr}=\"{}\"",
                    quick_xml::escape::escape(text.as_str())
                ));
            }
            out.push('>');
            if let Some(t) = m.get("#text").and_then(scalar) {
                out.push_str(&quick_xml::escape::escape(t.as_str()));
            }
            for (k, child) in m.iter().filter(|(k, _)| !k.starts_with(['@', '#'])) {
                element(out, k, child, depth + 1)?;
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        scalar_value => {
            let text = scalar(scalar_value).unwrap_or_default();
            out.push_str(&format!(
                "<{name}>{}</{name}>",
                quick_xml::escape::escape(text.as_str())
            ));
        }
    }
    Ok(())
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl XmlConvert {
    /// The request body hook's work, done at once.
    fn read_request_body(
        &self,
        head: &mut request::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Flow {
        if body.is_empty() {
            return Flow::Continue;
        }
        match self.convert(&mut head.headers, body) {
            Ok(()) => Flow::Continue,
            Err(why) => {
                let msg = format!("the request body could not be converted: {why}");
                Flow::Respond(Box::new(local_reply(
                    ErrorKind::BadRequest,
                    &msg,
                    ctx.request_id,
                )))
            }
        }
    }
}

impl Filter for XmlConvert {
    fn name(&self) -> &'static str {
        match self.direction {
            XmlDirection::XmlToJson => "xml_to_json",
            XmlDirection::JsonToXml => "json_to_xml",
        }
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn body_sides(&self) -> (bool, bool) {
        (
            self.side == BodySide::Request,
            self.side == BodySide::Response,
        )
    }

    fn request_body(&self, head: &request::Parts) -> bool {
        self.side == BodySide::Request && self.applies(&head.headers)
    }

    fn on_request_body<'a>(
        &'a self,
        head: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        FilterFuture::ready(self.read_request_body(head, body, ctx))
    }

    fn response_body(&self, head: &response::Parts) -> bool {
        self.side == BodySide::Response && self.applies(&head.headers)
    }

    fn on_response_body(
        &self,
        head: &mut response::Parts,
        body: &mut Bytes,
        _ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        if body.is_empty() {
            return Ok(());
        }
        self.convert(&mut head.headers, body).map_err(|why| {
            ProxyError::new(
                ErrorKind::UpstreamProtocol,
                format!("the upstream's body could not be converted: {why}"),
            )
        })?;
        head.headers.remove(header::ETAG);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostile_documents_are_refused_not_expanded() {
        let lol = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><l>&b;</l>"#;
        assert!(xml_to_json(lol).unwrap_err().contains("entity `&b;`"));
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        assert!(xml_to_json(&deep).unwrap_err().contains("deeper"));
        assert!(xml_to_json("<a><b></a>").is_err());
        assert!(xml_to_json("<a/><b/>")
            .unwrap_err()
            .contains("more than one root"));
        assert!(xml_to_json("<a>").unwrap_err().contains("not closed"));
        assert!(xml_to_json("").unwrap_err().contains("no root"));
    }

    #[test]
    fn references_and_cdata_are_text() {
        let v = xml_to_json("<a>x &amp; y &#65;<![CDATA[<raw>]]></a>").unwrap();
        assert_eq!(v, json!({"a": "x & y A<raw>"}));
    }

    #[test]
    fn json_names_that_xml_cannot_hold_are_refused() {
        assert!(json_to_xml(&json!({"a b": 1}), "root").is_err());
        assert!(json_to_xml(&json!({"x": {"@1": "v"}}), "root").is_err());
        assert_eq!(
            json_to_xml(&json!([1, 2]), "list").unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><list><item>1</item><item>2</item></list>"
        );
    }
}
