import { describe, expect, it } from 'vitest';
import type { Principal } from '../core/access.js';
import { DEFAULT_ROLES, RoleAuthorizer } from './rbac.js';

const who = (...roles: string[]): Principal => ({ id: 'p', roles, via: 'api_key' });
const cmd = (permission: string, readOnly = false) => ({ name: permission, permission, readOnly });

describe('RoleAuthorizer', () => {
  const rbac = new RoleAuthorizer({
    ...DEFAULT_ROLES,
    member: {
      commands: ['task.*', 'board.*'],
      queries: true,
      documents: { '*': ['read', 'follow', 'write'] },
      paths: { board: { deny: ['/settings/**'] } },
    },
    editor: {
      commands: ['task.*'],
      documents: { board: ['write'] },
      paths: { board: { allow: ['/tasks/*/status', '/tasks/*/note'] } },
    },
  });

  it('grants commands by glob, with exclusions', () => {
    expect(rbac.canExecute(who('admin'), cmd('state.rollback'))).toBe(true);
    expect(rbac.canExecute(who('member'), cmd('task.add'))).toBe(true);
    expect(rbac.canExecute(who('member'), cmd('state.rollback'))).toBe(false);
    expect(new RoleAuthorizer().canExecute(who('member'), cmd('state.undo'))).toBe(false);
    expect(new RoleAuthorizer().canExecute(who('member'), cmd('notes.add'))).toBe(true);
  });

  it('lets a role with queries call every read-only command, and nothing else', () => {
    expect(rbac.canExecute(who('viewer'), cmd('task.list', true))).toBe(true);
    expect(rbac.canExecute(who('viewer'), cmd('task.add'))).toBe(false);
  });

  it('grants nothing to unknown roles or no roles', () => {
    expect(rbac.canExecute(who('ghost'), cmd('task.list', true))).toBe(false);
    expect(rbac.canAccessDocument(who(), 'board', 'read')).toBe(false);
  });

  it('grants document actions per document pattern', () => {
    expect(rbac.canAccessDocument(who('viewer'), 'board', 'follow')).toBe(true);
    expect(rbac.canAccessDocument(who('viewer'), 'board', 'write')).toBe(false);
    expect(rbac.canAccessDocument(who('member'), 'board', 'rollback')).toBe(false);
    expect(rbac.canAccessDocument(who('admin'), 'board', 'rollback')).toBe(true);
  });

  it('refuses paths a deny pattern covers, and their ancestors', () => {
    const settings = cmd('board.settings');
    expect(rbac.findForbiddenPath(who('member'), settings, 'board', ['/settings/wipLimit'])).toBe(
      '/settings/wipLimit',
    );
    expect(rbac.findForbiddenPath(who('member'), settings, 'board', ['/settings'])).toBe('/settings');
    expect(rbac.findForbiddenPath(who('member'), settings, 'board', [''])).toBe('');
    expect(
      rbac.findForbiddenPath(who('member'), cmd('task.add'), 'board', ['/tasks/T-1', '/nextId']),
    ).toBeUndefined();
    expect(rbac.findForbiddenPath(who('admin'), settings, 'board', ['/settings/wipLimit'])).toBeUndefined();
    expect(rbac.findForbiddenPath(who('member'), settings, 'other', ['/settings/x'])).toBeUndefined();
  });

  it('with allow patterns, accepts only paths within them', () => {
    const claim = cmd('task.claim');
    expect(rbac.findForbiddenPath(who('editor'), claim, 'board', ['/tasks/T-1/status'])).toBeUndefined();
    expect(
      rbac.findForbiddenPath(who('editor'), claim, 'board', ['/tasks/T-1/status', '/tasks/T-1/assignee']),
    ).toBe('/tasks/T-1/assignee');
    expect(rbac.findForbiddenPath(who('editor'), claim, 'board', ['/tasks/T-1'])).toBe('/tasks/T-1');
  });

  it('unions what several roles grant', () => {
    expect(
      rbac.findForbiddenPath(who('editor', 'admin'), cmd('task.claim'), 'board', ['/tasks/T-1/assignee']),
    ).toBeUndefined();
  });

  it('rejects a malformed configuration with the path of the mistake', () => {
    expect(() => new RoleAuthorizer({ admin: { commands: 'task.*' as unknown as string[] } })).toThrow(
      /admin\.commands/,
    );
    expect(() => new RoleAuthorizer({ x: { paths: { '*': { deny: ['settings'] } } } })).toThrow(
      /JSON Pointer/,
    );
  });
});
