const Database = require('better-sqlite3');
const path = '/tmp/sf-lock-test.lock';
function take() {
  const db = new Database(path, { timeout: 0 });
  db.pragma('locking_mode = EXCLUSIVE');
  db.exec('BEGIN EXCLUSIVE; COMMIT');
  return db;
}
const a = take();
console.log('a took');
try { take(); console.log('b took (BAD)'); } catch (e) { console.log('b refused', e.code, e.message); }
const { spawnSync } = require('child_process');
const r = spawnSync(process.execPath, ['-e', `const D=require('better-sqlite3');try{const d=new D('${path}',{timeout:0});d.pragma('locking_mode = EXCLUSIVE');d.exec('BEGIN EXCLUSIVE; COMMIT');console.log('child took (BAD)')}catch(e){console.log('child refused',e.code)}`], { encoding: 'utf8', cwd: process.cwd() });
console.log(r.stdout, r.stderr);
a.close();
const c = take(); console.log('c took after close'); c.close();
