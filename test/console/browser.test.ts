/**
 * The console in a real browser (headless Chromium driven by playwright-core) against a real
 * `coremcp serve` process, with a real SDK client making commits beside it: sign-in, live updates,
 * history and diffs, rollback reaching the client's StateReplica, a viewer's limits, CSRF, a title
 * that looks like HTML, sign-out, a revoked key. Screenshots of each main view are saved as it goes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { StateReplica } from 'coremcp';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpClient, runCli, type ServerProcess, startServerProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor, waitForOutput } from '../helpers/wait.js';
import { launchChromium, screenshotDir } from './browser.js';

/** The page's globals read by code that `page.evaluate` runs there (this file is compiled for Node). */
declare const document: {
  activeElement: { id: string } | null;
  cookie: string;
  documentElement: { scrollWidth: number };
};
declare const localStorage: { length: number };
declare const sessionStorage: { length: number };
declare const window: { innerWidth: number };

const XSS = '<img src=x onerror=alert(1)>';
const tmp = tempDir();
const shots = screenshotDir();
let server: ServerProcess;
let origin: string;
let adminKey: string;
let viewerKey: string;
let sdk: Client;
let browser: Browser;
let admin: BrowserContext;
let page: Page;
/** Everything the pages reported that a strict CSP or a script injection would cause. */
const problems: string[] = [];
const dialogs: string[] = [];

function watch(target: Page): Page {
  // A missing element fails its step, naming the locator, well before the test's own timeout.
  target.setDefaultTimeout(10_000);
  target.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  target.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  target.on('console', (message) => {
    const text = message.text();
    // Refusals the tests provoke (401 before sign-in, 403s) are answers, asserted where they happen.
    if (message.type() === 'error' && !text.startsWith('Failed to load resource'))
      problems.push(`console: ${text}`);
  });
  return target;
}

async function newPage(context: BrowserContext): Promise<Page> {
  return watch(await context.newPage());
}

async function signIn(target: Page, key: string): Promise<void> {
  await target.goto(`${origin}/console`);
  await target.getByLabel('API key or bearer token').fill(key);
  await target.getByRole('button', { name: 'Sign in' }).click();
  await target.getByRole('heading', { name: 'Documents' }).waitFor();
}

async function shot(target: Page, name: string, fullPage = true): Promise<void> {
  await target.screenshot({ path: join(shots.dir, `${name}.png`), fullPage });
}

async function addTask(title: string): Promise<void> {
  const result = await sdk.callTool({ name: 'task.add', arguments: { title } });
  expect(result.isError).toBeFalsy();
}

beforeAll(async () => {
  server = await startServerProcess(['--data-dir', tmp.dir]);
  origin = new URL(server.url).origin;
  adminKey = server.firstKey!;
  const created = await runCli([
    'keys',
    'create',
    '--name',
    'vera',
    '--role',
    'viewer',
    '--data-dir',
    tmp.dir,
  ]);
  viewerKey = created.stdout.trim();
  sdk = await httpClient(server.url, adminKey);
  browser = await launchChromium();
  admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await newPage(admin);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await sdk?.close();
  await server?.stop();
  tmp.remove();
  shots.remove();
});

describe('the console in Chromium', () => {
  it('prints its URL at start, and signs in from the keyboard with a key kept out of URLs, storage and scripts', async () => {
    await waitForOutput(server.child.stderr!, server.stderr, 'console at');
    expect(server.stderr()).toContain(`coremcp: console at ${origin}/console`);
    await page.goto(`${origin}/console`);
    await page.getByLabel('API key or bearer token').waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('credential');
    await page.keyboard.type(adminKey);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Documents' }).waitFor();
    expect(page.url()).toBe(`${origin}/console`);
    expect(
      await page.evaluate(() => ({
        storage: localStorage.length + sessionStorage.length,
        cookie: document.cookie,
      })),
    ).toEqual({ storage: 0, cookie: '' });
    const [cookie] = await admin.cookies();
    expect(cookie).toMatchObject({
      name: 'coremcp_console',
      httpOnly: true,
      sameSite: 'Strict',
      path: '/console',
    });
    expect(cookie!.value).not.toContain(adminKey);
    await page.locator('tr[data-doc="board"]').waitFor();
    await shot(page, 'documents');
  });

  it('shows a commit made by an SDK client in the open document view without a reload, as text', async () => {
    await page.getByRole('link', { name: 'board', exact: true }).click();
    await page.getByText('live at head (r0)').waitFor();
    await addTask(XSS);
    const title = page.locator('.tree .v-string', { hasText: XSS });
    await title.waitFor({ timeout: 5000 });
    expect(await title.textContent()).toBe(JSON.stringify(XSS));
    expect(await page.locator('img').count()).toBe(0);
    expect(dialogs).toEqual([]);
    expect(await page.locator('.tree .changed').count()).toBeGreaterThan(0);
    await page.getByText('live at head (r1)').waitFor();
    // The tree is keyboard-operable: a node's toggle is a button.
    const settings = page.locator('.tree button.toggle', { hasText: 'settings' });
    await settings.focus();
    await page.keyboard.press('Enter');
    expect(await settings.getAttribute('aria-expanded')).toBe('false');
    await page.keyboard.press('Enter');
    expect(await settings.getAttribute('aria-expanded')).toBe('true');
    await shot(page, 'document');
  });

  it('browses the history, filters it, and opens a commit’s diff', async () => {
    await addTask('Write the release notes');
    await page.getByRole('link', { name: 'History', exact: true }).click();
    const newest = page.locator('li.commit').first();
    await newest.locator('.revision-badge', { hasText: 'r2' }).waitFor();
    expect(await newest.locator('.command').textContent()).toBe('task.add');
    expect(await newest.locator('.principal').textContent()).toBe('admin');
    await newest.getByRole('button', { name: 'Diff' }).click();
    await newest.locator('table.patches', { hasText: 'Write the release notes' }).waitFor();
    expect(await newest.locator('table.patches .path', { hasText: '/tasks/' }).count()).toBeGreaterThan(0);
    await shot(page, 'history');
    await page.getByLabel('command').fill('state.rollback');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No commits match.').waitFor();
    await page.getByLabel('command').fill('task.add');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('li.commit').nth(1).waitFor();
    expect(await page.locator('li.commit').count()).toBe(2);
  });

  it('rolls back from the console after a confirmation showing the diff, and the SDK client’s StateReplica receives it', async () => {
    const replica = new StateReplica(sdk, { doc: 'board' });
    await replica.watch();
    expect(replica.revision).toBe(2);
    await page.getByRole('link', { name: 'Documents' }).click();
    await page.getByRole('link', { name: 'board', exact: true }).click();
    await page.getByText('live at head (r2)').waitFor();
    await page.getByLabel('Revision number').fill('1');
    await page.getByLabel('Revision number').press('Enter');
    await page.getByText('viewing r1 of 2').waitFor();
    await page.getByRole('button', { name: 'Roll back to r1…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Roll back board to revision 1?' });
    await dialog.getByText('What the rollback changes').waitFor();
    const removal = dialog.locator('table.patches tr.op-remove');
    await removal.waitFor();
    expect(await removal.locator('.path').textContent()).toBe('/tasks/T-2');
    await dialog.locator('.commit-list li', { hasText: 'r2' }).waitFor();
    await shot(page, 'rollback');
    await dialog.getByRole('button', { name: 'Roll back 1 commit' }).click();
    await waitFor(() => replica.revision === 3, {
      message: () => `the replica at r3, not r${replica.revision}`,
    });
    const tasks = (replica.get() as { tasks: Record<string, { title: string }> }).tasks;
    expect(Object.values(tasks).map((t) => t.title)).toEqual([XSS]);
    await page.getByText('Rolled back to r1: new revision r3.').waitFor();
    await page.getByText('live at head (r3)').waitFor();
    await replica.unwatch();
    const audit = await runCli([
      'audit',
      'tail',
      '--command',
      'state.rollback',
      '--json',
      '--data-dir',
      tmp.dir,
    ]);
    expect(JSON.parse(audit.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      principal: 'admin',
      via: 'console',
      outcome: 'ok',
      revision: 3,
    });
  });

  it('shows a viewer no rollback control, and refuses the viewer’s direct POST with 403', async () => {
    const viewer = await browser.newContext();
    const vpage = await newPage(viewer);
    await signIn(vpage, viewerKey);
    expect(await vpage.getByRole('link', { name: 'Audit' }).count()).toBe(0);
    expect(await vpage.getByRole('link', { name: 'Keys' }).count()).toBe(0);
    await vpage.goto(`${origin}/console#/documents/board`);
    await vpage.getByText('live at head (r3)').waitFor();
    await vpage.getByLabel('Revision number').fill('1');
    await vpage.getByLabel('Revision number').press('Enter');
    await vpage.getByText('viewing r1 of 3').waitFor();
    expect(await vpage.getByRole('button', { name: /Roll back/ }).count()).toBe(0);
    await vpage.getByRole('link', { name: 'History', exact: true }).click();
    await vpage.locator('li.commit').first().waitFor();
    expect(await vpage.getByRole('button', { name: /Undo/ }).count()).toBe(0);
    const status = await vpage.evaluate(async () => {
      const session = (await (await fetch('/console/api/session')).json()) as { csrfToken: string };
      const response = await fetch('/console/api/rollback', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrfToken },
        body: JSON.stringify({ doc: 'board', toRevision: 0 }),
      });
      return {
        status: response.status,
        code: ((await response.json()) as { error: { data: { code: string } } }).error.data.code,
      };
    });
    expect(status).toEqual({ status: 403, code: 'forbidden' });
    await viewer.close();
  });

  it('refuses a change without the CSRF token, and a cross-site page’s forged POST changes nothing', async () => {
    const statuses = await page.evaluate(async () => {
      const post = (path: string, body: unknown) =>
        fetch(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      return [
        (await post('/console/api/rollback', { doc: 'board', toRevision: 0 })).status,
        (await post('/console/api/keys', { name: 'forged', role: 'admin' })).status,
      ];
    });
    expect(statuses).toEqual([403, 403]);
    // Another origin on the same host: a same-site page, so the cookie travels; the origin check stops it.
    const attacker = await serveAttacker(`${origin}/console/api/rollback`);
    try {
      const evil = await newPage(admin);
      await evil.goto(attacker.url);
      await evil.getByText('sent').waitFor();
      await evil.close();
    } finally {
      attacker.server.close();
    }
    const history = await runCli(['state', 'history', '--doc', 'board', '--json', '--data-dir', tmp.dir]);
    expect(JSON.parse(history.stdout)).toMatchObject({ head: 3 });
  });

  it('shows the audit trail with its chain verified, and health with charts', async () => {
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByText('Chain intact').waitFor();
    const hash = await page.locator('.verify code.hash').textContent();
    const verify = await runCli(['audit', 'verify', '--json', '--data-dir', tmp.dir]);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, lastHash: hash });
    await page.locator('table.audit td', { hasText: 'state.rollback' }).first().waitFor();
    expect(await page.locator('table.audit td', { hasText: '(console)' }).count()).toBeGreaterThan(0);
    await page.getByLabel('outcome').fill('forbidden');
    await page.getByRole('button', { name: 'Filter' }).click();
    await waitFor(async () => (await page.locator('table.audit .badge.ok').count()) === 0);
    expect(await page.locator('table.audit .badge', { hasText: 'forbidden' }).count()).toBeGreaterThan(0);
    await page.getByLabel('outcome').fill('');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('table.audit .badge.ok').first().waitFor();
    await shot(page, 'audit');
    await page.getByRole('link', { name: 'Health' }).click();
    await page.getByText('Readiness:').waitFor();
    await page.locator('table.checks td', { hasText: 'store' }).first().waitFor();
    // The charts need two samples (5 s apart) for their first interval.
    await page.locator('.chart polyline').first().waitFor({ timeout: 15_000 });
    await shot(page, 'health');
  });

  it('creates a key shown once, and revoking it ends the session signed in with it', async () => {
    await page.getByRole('link', { name: 'Keys' }).click();
    await page.locator('tr[data-key="vera"]').waitFor();
    await page.getByLabel('name').fill('temp-reviewer');
    await page.getByLabel('role').selectOption('viewer');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = (await page.locator('code.secret').textContent())!;
    expect(key).toMatch(/^cmcp_/);
    await page.getByRole('button', { name: 'Done' }).click();
    expect(await page.locator('code.secret').count()).toBe(0);
    await shot(page, 'keys');

    const other = await browser.newContext();
    const opage = await newPage(other);
    await signIn(opage, key);
    await opage.locator('.live-status.live').waitFor();
    await page.locator('tr[data-key="temp-reviewer"]').getByRole('button', { name: 'Revoke…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke the key "temp-reviewer"?' });
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await page.locator('tr[data-key="temp-reviewer"] .badge', { hasText: 'revoked' }).waitFor();
    await opage.getByText('The key this session signed in with was revoked.').waitFor();
    await opage.getByLabel('API key or bearer token').waitFor();
    await other.close();
  });

  it('is usable on a phone screen', async () => {
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
    });
    const ppage = await newPage(phone);
    await signIn(ppage, adminKey);
    await ppage.locator('tr[data-doc="board"]').waitFor();
    expect(await ppage.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await shot(ppage, 'phone', false);
    await ppage.goto(`${origin}/console#/documents/board`);
    await ppage.locator('.tree button.toggle', { hasText: 'T-1' }).click();
    await ppage.locator('.tree .v-string', { hasText: XSS }).waitFor();
    expect(await ppage.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await phone.close();
  });

  it('signs out: back to the sign-in form, and the old cookie no longer opens anything', async () => {
    const [cookie] = await admin.cookies();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You signed out.').waitFor();
    await page.getByLabel('API key or bearer token').waitFor();
    const replay = await fetch(`${origin}/console/api/documents`, {
      headers: { cookie: `${cookie!.name}=${cookie!.value}` },
    });
    expect(replay.status).toBe(401);
    expect(await admin.cookies()).toEqual([]);
  });

  it('reported no CSP violation, no script error, and logged no key but the first start’s', async () => {
    expect(problems).toEqual([]);
    expect(dialogs).toEqual([]);
    // The first start prints the key (and a client configuration with it); nothing after that does.
    const afterStart = server.stderr().slice(server.stderr().indexOf('coremcp: serving'));
    expect(afterStart).not.toContain(adminKey);
    expect(server.stderr()).not.toContain(viewerKey);
  });
});

/** A page on another origin that fires a simple (no-preflight) POST at the console, cookies included. */
async function serveAttacker(target: string): Promise<{ server: Server; url: string }> {
  const body = `<!doctype html><p id="s">sending</p><script>
fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ doc: 'board', toRevision: 0 }) })
  .finally(() => { document.getElementById('s').textContent = 'sent'; });
</script>`;
  const attacker = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(body);
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  return { server: attacker, url: `http://127.0.0.1:${(attacker.address() as AddressInfo).port}/` };
}
