#!/usr/bin/env bash
# Runs a real single-node Apache Kafka broker (KRaft mode, no ZooKeeper) on
# loopback for Eddy's tests. The first start fetches Kafka's own jars
# (org.apache.kafka:kafka_2.13 and its runtime dependencies) from Maven Central
# with Maven into a cache outside the repository; later starts reuse it. The
# broker listens on 127.0.0.1 only, on free ports, with Java's -Xmx512m.
#   scripts/kafka.sh start    # prints KAFKA_BOOTSTRAP=127.0.0.1:<port>
#   scripts/kafka.sh status   # running or not, and the bootstrap address
#   scripts/kafka.sh stop     # stops the broker and removes its state dir
#   scripts/kafka.sh restart  # stops the broker and starts it again on the same
#                             # ports with the same state dir (data kept)
#   scripts/kafka.sh classpath  # prints the classpath (for Kafka's CLI classes)
# Environment:
#   KAFKA_VERSION      Kafka release to run (default 4.1.1)
#   EDDY_KAFKA_CACHE   jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/eddy-kafka)
#   KAFKA_STATE_DIR    config, data, log, pid, bootstrap (default /tmp/eddy-kafka-$UID)
#   KAFKA_MAX_SECONDS  stop the broker by itself after this many seconds
#                      (default 3600; 0 = never)
#   KAFKA_START_TIMEOUT  seconds to wait for the broker to come up (default 60)
# Needs java (17+), mvn and python3: scripts/setup.sh installs them.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
CACHE=${EDDY_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy-kafka}
LIB=$CACHE/$KAFKA_VERSION/lib
STATE=${KAFKA_STATE_DIR:-/tmp/eddy-kafka-$(id -u)}
MAX_SECONDS=${KAFKA_MAX_SECONDS:-3600}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found; run scripts/setup.sh (installs maven and openjdk-17-jre-headless)"
}

# Resolves kafka_2.13:$KAFKA_VERSION and its runtime dependencies into $LIB once.
fetch_jars() {
  if [ -f "$LIB/.complete" ]; then return; fi
  need mvn
  local dir=$CACHE/$KAFKA_VERSION
  mkdir -p "$dir"
  rm -rf "$LIB"
  # Kafka 4.x logs through log4j2 (kafka_2.13 declares only slf4j-api 1.7, so log4j-core and the
  # slf4j 1.x binding log4j-slf4j-impl are added here).
  cat >"$dir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eddy</groupId>
  <artifactId>eddy-kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
EOF
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB" >&2
  if ! mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIB" >"$dir/mvn.log" 2>&1; then
    tail -n 30 "$dir/mvn.log" >&2
    die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (log: $dir/mvn.log); try another KAFKA_VERSION"
  fi
  ls "$LIB"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "kafka_2.13-$KAFKA_VERSION.jar missing in $LIB"
  touch "$LIB/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

running() {
  [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

port_open() {
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$1" 2>/dev/null
}

# Runs the broker of the prepared state dir (server.properties, formatted log
# dir, bootstrap) in the background with its watchdog and waits until it serves.
launch() {
  local port
  port=$(cat "$STATE/bootstrap"); port=${port##*:}
  local jopts=(-Xmx512m -Xms128m -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$STATE/log4j2.properties" -Dkafka.logs.dir="$STATE")
  if [ -f "$STATE/server.log" ]; then mv -f "$STATE/server.log" "$STATE/server.log.1"; fi
  # setsid: the broker outlives this shell; the watchdog stops it after MAX_SECONDS.
  setsid java "${jopts[@]}" -cp "$LIB/*" kafka.Kafka "$STATE/server.properties" \
    >"$STATE/server.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$STATE/pid"
  if [ "$MAX_SECONDS" -gt 0 ]; then
    setsid bash -c 'sleep "$1"; if kill -0 "$2" 2>/dev/null; then echo "kafka.sh: KAFKA_MAX_SECONDS=$1 reached, stopping" >>"$3/server.log"; kill "$2"; sleep 20; kill -9 "$2" 2>/dev/null; fi' \
      _ "$MAX_SECONDS" "$pid" "$STATE" >/dev/null 2>&1 </dev/null &
    echo $! >"$STATE/watchdog.pid"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$STATE/server.log" 2>/dev/null \
      && port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$STATE/server.log" >&2
      stop_process >/dev/null 2>&1 || true
      die "broker did not come up within ${START_TIMEOUT}s (log above)"
    fi
    sleep 0.5
  done
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$port"
}

start() {
  if running; then
    echo "kafka.sh: already running (pid $(cat "$STATE/pid"))" >&2
    echo "KAFKA_BOOTSTRAP=$(cat "$STATE/bootstrap")"
    return
  fi
  need java; need python3
  fetch_jars
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  local port cport
  port=$(free_port)
  cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  cat >"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=4
log.dirs=$STATE/data
auto.create.topics.enable=true
EOF
  cat >"$STATE/log4j2.properties" <<EOF
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
EOF
  local jopts=(-Xmx512m -Xms128m -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$STATE/log4j2.properties" -Dkafka.logs.dir="$STATE")
  local cluster_id
  # Kafka's own Uuid format: 16 random bytes, url-safe base64; never starting with '-'.
  cluster_id=$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"): break
print(s)')
  if ! java "${jopts[@]}" -cp "$LIB/*" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$STATE/server.properties" >"$STATE/format.log" 2>&1; then
    cat "$STATE/format.log" >&2
    rm -rf "$STATE"
    die "formatting the KRaft log dir $STATE/data failed"
  fi
  echo "127.0.0.1:$port" >"$STATE/bootstrap"
  launch
}

# Stops the broker process and its watchdog; the state dir stays.
stop_process() {
  if [ -f "$STATE/watchdog.pid" ]; then
    kill -- "-$(cat "$STATE/watchdog.pid")" 2>/dev/null || kill "$(cat "$STATE/watchdog.pid")" 2>/dev/null || true
    rm -f "$STATE/watchdog.pid"
  fi
  if running; then
    local pid
    pid=$(cat "$STATE/pid")
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: broker $pid ignored TERM for 30s, killing" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "kafka.sh: stopped (pid $pid)"
  else
    echo "kafka.sh: not running"
  fi
}

stop() {
  stop_process
  rm -rf "$STATE"
}

# Stops the broker and starts it again on the same ports with the same data
# (topics, messages, committed offsets and producer state survive).
restart() {
  [ -f "$STATE/server.properties" ] && [ -f "$STATE/bootstrap" ] \
    || die "no broker state in $STATE to restart; use scripts/kafka.sh start"
  need java; need python3
  fetch_jars
  stop_process >&2
  launch
}

status() {
  if running; then
    echo "kafka.sh: running (pid $(cat "$STATE/pid"), state $STATE)"
    echo "KAFKA_BOOTSTRAP=$(cat "$STATE/bootstrap" 2>/dev/null || echo starting)"
  else
    echo "kafka.sh: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  status) status ;;
  classpath) fetch_jars; echo "$LIB/*" ;;
  *) die "usage: scripts/kafka.sh start|stop|restart|status|classpath" ;;
esac
