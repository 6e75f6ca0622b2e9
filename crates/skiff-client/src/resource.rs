//! Command-line resource arguments: `KIND`, `KIND NAME...`, `KIND/NAME...`, `pods,svc`, and how kinds are printed.

use skiff_api::ResourceInfo;

use crate::error::{Error, Result};

/// One resource type and the names asked for (empty: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub resource: &'static ResourceInfo,
    pub names: Vec<String>,
}

/// Resolve a resource type name (plural, singular, kind or short name, optionally `.group`).
pub fn resource_type(name: &str) -> Result<&'static ResourceInfo> {
    let (base, group) = match name.split_once('.') {
        Some((b, g)) => (b, Some(g)),
        None => (name, None),
    };
    skiff_api::registry::lookup(base)
        .filter(|r| group.is_none_or(|g| g == r.group || g == format!("{}.{}", r.version, r.group)))
        .ok_or_else(|| Error::Usage(format!("the server doesn't have a resource type \"{name}\"")))
}

/// How kubectl names the type in messages: `pod`, `deployment.apps`.
pub fn display_kind(res: &ResourceInfo) -> String {
    let kind = res.kind.to_lowercase();
    if res.group.is_empty() {
        kind
    } else {
        format!("{kind}.{}", res.group)
    }
}

/// `pod/web`, `deployment.apps/web`.
pub fn display_name(res: &ResourceInfo, name: &str) -> String {
    format!("{}/{name}", display_kind(res))
}

/// Parse `get`/`delete`/`describe` arguments the way kubectl does: either every argument is
/// `KIND/NAME`, or the first is a comma list of types and the rest are names (applied to each
/// type). Selections of the same type are merged, keeping first-seen order.
pub fn parse_selections(args: &[String]) -> Result<Vec<Selection>> {
    let Some(first) = args.first() else {
        return Err(Error::Usage(
            "you must specify the type of resource to get. Use \"skiff api-resources\"-style names: pods, services, deployments, ..."
                .into(),
        ));
    };
    let mut out: Vec<Selection> = Vec::new();
    let mut add = |res: &'static ResourceInfo, name: Option<&str>| {
        let idx = match out.iter().position(|s| std::ptr::eq(s.resource, res)) {
            Some(i) => i,
            None => {
                out.push(Selection { resource: res, names: Vec::new() });
                out.len() - 1
            }
        };
        if let Some(n) = name {
            if !out[idx].names.iter().any(|x| x == n) {
                out[idx].names.push(n.to_string());
            }
        }
    };
    if first.contains('/') {
        for a in args {
            let (kind, name) = a.split_once('/').filter(|(k, n)| !k.is_empty() && !n.is_empty()).ok_or_else(|| {
                Error::Usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiff get resource/<resource_name>' instead of 'skiff get resource resource/<resource_name>'): {a}"
                ))
            })?;
            add(resource_type(kind)?, Some(name));
        }
        return Ok(out);
    }
    let types = first.split(',').filter(|t| !t.is_empty()).map(resource_type).collect::<Result<Vec<_>>>()?;
    for res in types {
        add(res, None);
        for name in &args[1..] {
            if name.contains('/') {
                return Err(Error::Usage(format!(
                    "arguments in resource/name form must have a single resource and name: {name}"
                )));
            }
            add(res, Some(name));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::{DEPLOYMENTS, PODS, SERVICES};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kind_and_names() {
        let s = parse_selections(&args(&["po", "a", "b"])).unwrap();
        assert_eq!(s, vec![Selection { resource: &PODS, names: args(&["a", "b"]) }]);
        let s = parse_selections(&args(&["pods,svc"])).unwrap();
        assert_eq!(s.len(), 2);
        assert!(std::ptr::eq(s[1].resource, &SERVICES) && s[1].names.is_empty());
    }

    #[test]
    fn kind_slash_name() {
        let s = parse_selections(&args(&["deploy/web", "pod/a", "deployment.apps/api", "deployments/web"])).unwrap();
        assert_eq!(
            s,
            vec![
                Selection { resource: &DEPLOYMENTS, names: args(&["web", "api"]) },
                Selection { resource: &PODS, names: args(&["a"]) }
            ]
        );
        assert!(parse_selections(&args(&["pod/a", "b"])).is_err());
        assert!(parse_selections(&args(&["pod", "x/b"])).is_err());
        assert!(parse_selections(&args(&[])).is_err());
    }

    #[test]
    fn unknown_types_and_display() {
        assert_eq!(
            parse_selections(&args(&["configmaps"])).unwrap_err().to_string(),
            "error: the server doesn't have a resource type \"configmaps\""
        );
        assert!(resource_type("deployments.apps").is_ok());
        assert!(resource_type("deployments.core").is_err());
        assert_eq!(display_name(&DEPLOYMENTS, "web"), "deployment.apps/web");
        assert_eq!(display_name(&PODS, "x"), "pod/x");
    }
}
