/**
 * Headless Chromium for the console's browser tests: Debian's build at /usr/bin/chromium (`.ci/run`
 * installs it), driven by playwright-core, with a fresh profile per launch and no background traffic.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.COREMCP_CHROMIUM ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (.ci/run does)`,
    );
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Without the network flags Chromium tries to reach Google's services, which this machine refuses.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/**
 * Where screenshots go: `$COREMCP_SCREENSHOTS` (`npm run screenshots` sets docs/images), else a
 * temporary folder, so a plain `npm test` leaves the working tree as it was.
 */
export function screenshotDir(): { dir: string; remove: () => void } {
  const wanted = process.env.COREMCP_SCREENSHOTS;
  if (!wanted) {
    const dir = mkdtempSync(join(tmpdir(), 'coremcp-screens-'));
    return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const dir = resolve(wanted);
  mkdirSync(dir, { recursive: true });
  return { dir, remove: () => {} };
}
