#!/usr/bin/env python3
"""GET /api/v1/environments/NAME (the latest version) after many versions of one environment.

Registers N versions of one environment (default 2,800) and 200 other environments through a
team server on SQLite, then times 500 sequential GETs of the latest version; then adds the
(name, seq) index by hand (for a workspace made before migration 0007) and times them again.
With the migration applied both lines show the indexed time.
Needs a built binary: BINARY=target/HOST/debug/terrarium or `cargo build --release`.
"""
import json, subprocess, threading, time, urllib.request, re, sys, sqlite3, os
from binary import built_binary  # benches/binary.py: where cargo put the build
BIN=os.environ.get('BINARY') or built_binary('release')
import tempfile; ws=tempfile.mkdtemp() + '/ws'

tok=json.loads(subprocess.check_output([BIN,'token','create','--db',f'sqlite://{ws}','--role','admin','--name','b','--json']))['token']
def start():
    p=subprocess.Popen([BIN,'server','--db',f'sqlite://{ws}','--listen','127.0.0.1:0'],stderr=subprocess.PIPE,text=True)
    for line in p.stderr:
        m=re.search(r'listening on (http://\S+)',line)
        if m: url=m.group(1); break
    threading.Thread(target=lambda: [None for _ in p.stderr],daemon=True).start()
    return p,url
p,url=start()
N=int(sys.argv[1]) if len(sys.argv)>1 else 2800
def post(i):
    body=json.dumps({"definition":{"name":"big","environment_variables":{"I":str(i)}}}).encode()
    req=urllib.request.Request(url+"/api/v1/environments",data=body,headers={"Authorization":"Bearer "+tok,"Content-Type":"application/json"},method="POST")
    urllib.request.urlopen(req).read()
t=time.time()
for i in range(N): post(i)
# other environments registered after, so the newest rows are not big's
for i in range(200):
    body=json.dumps({"definition":{"name":f"other{i}"}}).encode()
    urllib.request.urlopen(urllib.request.Request(url+"/api/v1/environments",data=body,headers={"Authorization":"Bearer "+tok,"Content-Type":"application/json"},method="POST")).read()
print(f"registered {N} versions in {time.time()-t:.1f}s")
def measure(label):
    lat=[]
    for _ in range(500):
        s=time.perf_counter(); urllib.request.urlopen(urllib.request.Request(url+"/api/v1/environments/big",headers={"Authorization":"Bearer "+tok})).read(); lat.append(time.perf_counter()-s)
    lat.sort()
    print(f"{label}: GET latest p50 {lat[250]*1000:.2f} ms, p99 {lat[494]*1000:.2f} ms")
measure("no index")
p.terminate(); p.wait()
c=sqlite3.connect(f'{ws}/workspace.db'); c.execute("CREATE INDEX IF NOT EXISTS versions_latest ON versions (name, seq)"); c.commit(); c.close()
p,url=start()
measure("index (name, seq)")
p.terminate()
