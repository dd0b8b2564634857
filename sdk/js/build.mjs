// The build script `weir plugin build` runs for JavaScript and TypeScript
// plugins. Weir writes it into the project as build/weir-build.mjs on every
// build (edits there are overwritten) and runs it from the project
// directory as `node build/weir-build.mjs OUT.wasm`.
//
// 1. The entry point is src/plugin.ts if it exists, else src/plugin.js.
// 2. TypeScript is type-checked with `tsc --noEmit` when the project has
//    typescript installed and a tsconfig.json.
// 3. esbuild (when installed) bundles the entry point, the files it
//    imports and any npm packages it uses into one ES module, and strips
//    TypeScript types. The `weir:plugin/*` imports stay imports: they are
//    the host's functions. Without esbuild, a .js entry point is used as it
//    is (relative imports inside the project still work).
// 4. componentize-js turns the module into a component of the world
//    `weir:plugin/plugin@0.1.0` in wit/plugin.wit.

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';

// WASI features of the JavaScript engine that Weir plugins leave out:
// outbound HTTP goes through `weir:plugin/outbound-http`, and the gateway
// serves requests itself. stdio (console.* and uncaught errors, which the
// gateway logs), random and clocks stay.
const DISABLED_FEATURES = ['http', 'fetch-event'];

function fail(message) {
  console.error(message);
  process.exit(1);
}

const out = process.argv[2];
if (!out) fail('usage: node build/weir-build.mjs OUT.wasm');
const project = process.cwd();

const entry = ['src/plugin.ts', 'src/plugin.js']
  .map((p) => join(project, p))
  .find((p) => existsSync(p));
if (!entry) fail('no src/plugin.ts or src/plugin.js: that file is the plugin, exporting `filter`');
const typescript = entry.endsWith('.ts');

if (typescript) {
  const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
  if (existsSync(tsc) && existsSync(join(project, 'tsconfig.json'))) {
    const check = spawnSync(process.execPath, [tsc, '--noEmit', '-p', 'tsconfig.json'], {
      cwd: project,
      encoding: 'utf8',
    });
    if (check.status !== 0) fail(`type check failed (tsc --noEmit):\n${check.stdout}${check.stderr}`);
  }
}

let esbuild = null;
try {
  esbuild = await import('esbuild');
} catch {
  if (typescript) {
    fail(
      'src/plugin.ts needs esbuild to compile it: npm install --save-dev --save-exact esbuild@0.25.12',
    );
  }
}

let source = entry;
if (esbuild) {
  source = join(project, 'build', 'plugin.bundle.js');
  try {
    await esbuild.build({
      entryPoints: [entry],
      outfile: source,
      bundle: true,
      format: 'esm',
      // The engine has the web's globals (TextEncoder, console, crypto's
      // getRandomValues) and no Node.js modules.
      platform: 'browser',
      target: 'es2022',
      external: ['weir:*'],
      logLevel: 'silent',
    });
  } catch (e) {
    const errors = (e.errors ?? []).map((m) => {
      const at = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '';
      return `${at}${m.text}`;
    });
    fail(`esbuild could not bundle ${entry}:\n${errors.length ? errors.join('\n') : e.message}`);
  }
}

let componentize;
try {
  ({ componentize } = await import('@bytecodealliance/componentize-js'));
} catch (e) {
  // componentize-js 0.23.0 imports @bytecodealliance/preview2-shim without
  // declaring it: a project must list it itself.
  const hint = String(e.message ?? e).includes('preview2-shim')
    ? '\nadd it with: npm install --save-dev --save-exact @bytecodealliance/preview2-shim@0.25.0'
    : '';
  fail(`cannot load componentize-js: ${e.message ?? e}${hint}`);
}
let component;
try {
  ({ component } = await componentize({
    sourcePath: source,
    witPath: join(project, 'wit'),
    worldName: 'plugin',
    disableFeatures: DISABLED_FEATURES,
  }));
} catch (e) {
  fail(`componentize-js failed: ${e.message ?? e}`);
}

const target = resolve(project, out);
await mkdir(dirname(target), { recursive: true });
await writeFile(target, component);
console.log(`${target}: ${component.length} bytes`);
