#!/usr/bin/env python3
# Regenerates the "Supported fields, by message" list of docs/envoy-compat.md from the
# SUPPORTED table in crates/config/src/support.rs (a unit test checks they agree).
import os, re
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
src=open(os.path.join(root, 'crates/config/src/support.rs')).read()
table=src[src.index('pub const SUPPORTED'):src.index('pub const SUPPORTED_EXTENSIONS')]
entries=re.findall(r'\(\s*"([\w.]+)",\s*&\[(.*?)\],?\s*\)', table, re.S)
lines=[]
for msg, fields in entries:
    fs=re.findall(r'"(\w+)"', fields)
    lines.append(f"- `{msg}`: " + (", ".join(f"`{f}`" for f in fs) if fs else "(no fields)"))
p=os.path.join(root, 'docs/envoy-compat.md')
doc=open(p).read()
start=doc.index('- `envoy.config.bootstrap.v3.Bootstrap`:')
end=doc.index('\n## Values with limits')
doc=doc[:start]+"\n".join(lines)+"\n"+doc[end:]
open(p,'w').write(doc)
print(len(lines))
