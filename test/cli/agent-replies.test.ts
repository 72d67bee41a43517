import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCli, tempDir } from '../helpers/cli';

/** Not a Shardform agent: answers 200 to everything, with the body the test sets. */
function otherServer(): { server: Server; reply: (contentType: string, body: string) => void } {
  let current = { contentType: 'application/json', body: '{"hello":"world"}' };
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': current.contentType }).end(current.body));
  });
  return { server, reply: (contentType, body) => (current = { contentType, body }) };
}

describe('the CLI checks what an --agent answers', () => {
  const dir = tempDir('cli-agent-replies');
  const tokenFile = dir.file('token', 'some-token\n');
  const other = otherServer();
  let url: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => other.server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(other.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => other.server.close(resolve));
    dir.remove();
  });

  it.each([
    [['shards', 'ls'], 'GET /v1/shards', 'hostId: is required'],
    [['shards', 'get', 'web-0'], 'GET /v1/shards/web-0', 'shardId: is required'],
    [['shards', 'resize', 'web-0', '--cpu', '1'], 'POST /v1/shards/web-0/resize', 'shardId: is required'],
    [['drain'], 'POST /v1/drain', 'drained: is required'],
    [['migrate', 'web-0', '--to', 'host-b'], 'POST /v1/migrations', 'id: is required'],
    [['predict'], 'GET /v1/predictions', 'hostId: is required'],
  ])('%j against a server that answers 200 with other JSON: exit 1 naming the URL and what is wrong, no stack', async (args, request, problem) => {
    other.reply('application/json', '{"hello":"world"}');
    const r = await runCli(...args, '--agent', url, '--token-file', tokenFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`error: ${url} is not a Shardform agent, or not one this CLI understands: its answer to ${request} is not what the agent API returns: `);
    expect(r.stderr).toContain(problem);
    expect(r.stderr).not.toMatch(/TypeError|\n\s+at /);
  });

  it('names the field and value of an almost-right reply, and says how many problems it left out', async () => {
    other.reply('application/json', JSON.stringify({ hostId: 'host-a', drained: false, shards: [{ shardId: 'web-0', applicationId: 'web', state: 'running', pid: 'many', restarts: -1, adopted: 0, frozen: false, limits: { cpuCores: 'lots' } }] }));
    const r = await runCli('shards', 'ls', '--agent', url, '--token-file', tokenFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('shards[0].pid: must be integer,null (got "many"); shards[0].restarts: must be >= 0 (got -1); shards[0].adopted: must be boolean (got 0); and 1 more');
  });

  it('refuses a reply that is not JSON at all', async () => {
    other.reply('text/html', '<html><body>It works!</body></html>');
    const r = await runCli('shards', 'ls', '--agent', url, '--token-file', tokenFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('(root): must be object (got "<html><body>It works!</body></html>")');
  });
});
