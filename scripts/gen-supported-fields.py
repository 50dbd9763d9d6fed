#!/usr/bin/env python3
# Rewrites the generated sections of docs/envoy-compat.md (the extension table and the
# supported fields by message) from `ferry support`, which lists what the converters
# declare with `fields!`. A unit test of the `ferry` crate checks they agree.
import os, subprocess
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
out = subprocess.run(['cargo', 'run', '-q', '-p', 'ferry', '--', 'support'], cwd=root,
                     check=True, capture_output=True, text=True).stdout
extensions, fields = out.split('\n\n', 1)
p = os.path.join(root, 'docs/envoy-compat.md')
doc = open(p).read()
start = doc.index('| extension name | config type |')
end = doc.index('\n\n', start) + 1
doc = doc[:start] + extensions + '\n' + doc[end:]
start = doc.index('- `', doc.index('## Supported fields, by message'))
end = doc.index('\n## Values with limits')
doc = doc[:start] + fields + doc[end:]
open(p, 'w').write(doc)
print(fields.count('\n'), 'messages')
