/** What a tool's description warns of: the paths every role that grants the call denies. */
import { localPrincipal, RoleAuthorizer } from 'coremcp';
import { expect, it } from 'vitest';

const roles = new RoleAuthorizer({
  editor: {
    commands: ['doc.*'],
    documents: { notes: ['read', 'write'] },
    paths: { notes: { deny: ['/meta/**'] } },
  },
  clerk: {
    commands: ['doc.*'],
    documents: { notes: ['read', 'write'] },
    paths: { notes: { deny: ['/meta/**', '/owner'] } },
  },
  owner: { commands: ['doc.*'], documents: { notes: ['read', 'write'] } },
  reader: { queries: true, documents: { notes: ['read'] } },
});
const edit = { name: 'doc.edit', permission: 'doc.edit' };

it('names the patterns denied by every role that lets the principal write, and none a granting role allows', () => {
  expect(roles.deniedPaths(localPrincipal('c', ['clerk']), edit, 'notes')).toEqual(['/meta/**', '/owner']);
  expect(roles.deniedPaths(localPrincipal('ce', ['clerk', 'editor']), edit, 'notes')).toEqual(['/meta/**']);
  expect(roles.deniedPaths(localPrincipal('co', ['clerk', 'owner']), edit, 'notes')).toEqual([]);
  // A role that cannot write the document at all decides nothing.
  expect(roles.deniedPaths(localPrincipal('cr', ['clerk', 'reader']), edit, 'notes')).toEqual([
    '/meta/**',
    '/owner',
  ]);
  expect(roles.deniedPaths(localPrincipal('c', ['clerk']), edit, 'other')).toEqual([]);
});
