/**
 * The user data an AwsHostPool's instances boot with: install the agent, fetch the plan from
 * its S3 object with the instance role, run the agent under systemd, and re-fetch the plan every
 * minute (restarting the agent when its bytes change), so `cdktf deploy` of a new generation
 * reaches running hosts without replacing them.
 *
 * Terraform interpolates `${...}` and `%{...}` inside strings, and cdktf's Fn.base64encode
 * refuses unescaped double quotes, so the script uses only the `$NAME` form of variables and no
 * double quotes (every value in it is an id, a path or a URI without spaces);
 * `renderAgentUserData` refuses a template that would be mangled.
 */
import { ShardformError } from '../src/errors';

export interface AgentUserDataValues {
  /** `s3://bucket/key` of the plan (may contain a Terraform reference for the bucket). */
  readonly planS3Uri: string;
  readonly fleet: string;
  readonly pool: string;
  readonly agentPort: number;
  /** npm package spec of the agent, e.g. `shardform@0.1.0`. */
  readonly agentPackage: string;
  /** The fleet's `agent.stateDirectory`: the plan file is kept there, each agent's state in `<it>/<instance id>`. */
  readonly stateDirectory: string;
}

/** What a path may hold to go unquoted into a root boot script, a systemd unit and an env file. */
export const PLAIN_PATH = /^\/[A-Za-z0-9._/-]*$/;

export function renderAgentUserData(v: AgentUserDataValues): string {
  if (!PLAIN_PATH.test(v.stateDirectory)) {
    throw new ShardformError('INVALID_PROPS', 'agent.stateDirectory', v.stateDirectory, 'must be a plain absolute path (letters, digits, . _ - /) for an AwsHostPool: it goes unquoted into the hosts\' boot script and systemd unit');
  }
  const plan = `${v.stateDirectory}/shard-plan.json`;
  const lines = [
    '#!/bin/bash',
    '# Shardform host bootstrap, rendered by AwsHostPool: install the agent, fetch the plan, run the agent.',
    'set -euo pipefail',
    'export DEBIAN_FRONTEND=noninteractive',
    'apt-get update -q',
    // Debian 13: nodejs 20 (the agent needs >= 20.3; Debian 12 ships 18) and CRIU 4 (checkpoint migrations).
    'apt-get install -y -q nodejs npm awscli curl criu',
    // A custom imageId may bring an older Node: fail here, in the boot log, not in a restart loop of the unit.
    // 20.3, not 20: package.json's engines (20.0-20.2 passed a major-only check, then failed in the unit).
    'NODE_MAJOR=$(node -p process.versions.node | cut -d. -f1); NODE_MINOR=$(node -p process.versions.node | cut -d. -f2)',
    '[ $NODE_MAJOR -gt 20 ] || { [ $NODE_MAJOR -eq 20 ] && [ $NODE_MINOR -ge 3 ]; } || { echo shardform: the agent needs Node.js 20.3 or newer, this image has $(node --version) >&2; exit 1; }',
    `npm install --global --omit=dev '${v.agentPackage}'`,
    `mkdir -p /etc/shardform '${v.stateDirectory}'`,
    // IMDSv2 (the launch template requires tokens): the instance id is the host id.
    "IMDS_TOKEN=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')",
    'INSTANCE_ID=$(curl -sf -H X-aws-ec2-metadata-token:$IMDS_TOKEN http://169.254.169.254/latest/meta-data/instance-id)',
    // The region from the instance itself: always right, and known only at boot when the provider's region is a token.
    'REGION=$(curl -sf -H X-aws-ec2-metadata-token:$IMDS_TOKEN http://169.254.169.254/latest/meta-data/placement/region)',
    'cat > /etc/shardform/agent.env <<ENV',
    `SHARDFORM_PLAN_S3=${v.planS3Uri}`,
    `SHARDFORM_PLAN_FILE=${plan}`,
    'SHARDFORM_HOST_ID=$INSTANCE_ID',
    // The agent's own state (last good plan, shard records, logs, metric history), per host id.
    `SHARDFORM_STATE_DIR=${v.stateDirectory}/$INSTANCE_ID`,
    `SHARDFORM_FLEET=${v.fleet}`,
    `SHARDFORM_POOL=${v.pool}`,
    `SHARDFORM_PORT=${v.agentPort}`,
    // The plan lists no hosts for an AWS pool, so the agent cannot take its address from it
    // ("--host i-... is not a host of the plan; pass --listen"): every interface, the fleet's port.
    `SHARDFORM_LISTEN=:${v.agentPort}`,
    'AWS_DEFAULT_REGION=$REGION',
    'ENV',
    "cat > /usr/local/sbin/shardform-fetch-plan <<'SCRIPT'",
    '#!/bin/sh',
    '# Downloads the plan; with --restart, restarts the agent when the bytes changed.',
    'set -eu',
    '. /etc/shardform/agent.env',
    'export AWS_DEFAULT_REGION',
    'aws s3 cp --only-show-errors $SHARDFORM_PLAN_S3 $SHARDFORM_PLAN_FILE.new',
    'if cmp -s $SHARDFORM_PLAN_FILE.new $SHARDFORM_PLAN_FILE; then rm -f $SHARDFORM_PLAN_FILE.new; exit 0; fi',
    'mv $SHARDFORM_PLAN_FILE.new $SHARDFORM_PLAN_FILE',
    'if [ x$* = x--restart ]; then systemctl try-restart shardform-agent.service; fi',
    'SCRIPT',
    'chmod 0755 /usr/local/sbin/shardform-fetch-plan',
    "cat > /etc/systemd/system/shardform-agent.service <<'UNIT'",
    '[Unit]',
    'Description=Shardform host agent',
    'After=network-online.target',
    'Wants=network-online.target',
    '[Service]',
    'EnvironmentFile=/etc/shardform/agent.env',
    'ExecStartPre=/usr/local/sbin/shardform-fetch-plan',
    // systemd expands $NAME only as a whole word (${NAME} is Terraform's), hence SHARDFORM_LISTEN.
    'ExecStart=/usr/local/bin/shardform agent --plan $SHARDFORM_PLAN_FILE --host $SHARDFORM_HOST_ID --listen $SHARDFORM_LISTEN --state-dir $SHARDFORM_STATE_DIR',
    'Restart=always',
    'RestartSec=5',
    '[Install]',
    'WantedBy=multi-user.target',
    'UNIT',
    "cat > /etc/systemd/system/shardform-plan.service <<'UNIT'",
    '[Unit]',
    'Description=Fetch the Shardform plan and restart the agent when it changed',
    '[Service]',
    'Type=oneshot',
    'ExecStart=/usr/local/sbin/shardform-fetch-plan --restart',
    'UNIT',
    "cat > /etc/systemd/system/shardform-plan.timer <<'UNIT'",
    '[Unit]',
    'Description=Poll the Shardform plan every minute',
    '[Timer]',
    'OnBootSec=1min',
    'OnUnitActiveSec=1min',
    '[Install]',
    'WantedBy=timers.target',
    'UNIT',
    'systemctl daemon-reload',
    'systemctl enable --now shardform-agent.service shardform-plan.timer',
    '',
  ];
  const script = lines.join('\n');
  // Values may carry cdktf tokens (rendered as `${TfToken[...]}`); only the literal text must be free of template syntax.
  const literal = script.replace(/\$\{TfToken\[[^\]]+\]\}/g, '');
  const bad = /[$%]\{|"/.exec(literal);
  if (bad)
    throw new ShardformError('INVALID_PROPS', 'userData', bad[0], `agent user data must not contain \${, %{ or " (Terraform would interpolate or cdktf refuse it); found ${bad[0]}`);
  return script;
}
