// Package python holds the Python side of workerd, shipped inside the
// binary so that a worker needs nothing but an interpreter and the app.
package python

import _ "embed"

// Source is the worker program (standard library only).
//
//go:embed edged_worker.py
var Source []byte

// Bootstrap is the -c argument that reads Source from fd 4 and runs it, so
// that tracebacks name the file and ps shows a short command line.
const Bootstrap = `import os;f=os.fdopen(4,"rb");s=f.read();f.close();exec(compile(s,"edged_worker.py","exec"),{"__name__":"__edged_worker__"})`
