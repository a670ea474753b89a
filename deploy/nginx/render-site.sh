#!/usr/bin/env bash
# Renders kumulus.conf.template (next to this script) into an nginx site on stdout:
#
#   deploy/nginx/render-site.sh --server-name kumulus.example.com \
#     --replicas 127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083 \
#     --cert /etc/letsencrypt/live/kumulus.example.com/fullchain.pem \
#     --key /etc/letsencrypt/live/kumulus.example.com/privkey.pem \
#     > /etc/nginx/sites-available/kumulus
#
# Optional: --https-port (443), --http-port (80). The public URL the site redirects to is
# https://NAME (with :PORT when not 443): set the same as KUMULUS_BACKEND_PUBLIC_URL.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

server_name="" replicas="" cert="" key="" https_port=443 http_port=80
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case $1 in
    --server-name) server_name=$2 ;;
    --replicas) replicas=$2 ;;
    --cert) cert=$2 ;;
    --key) key=$2 ;;
    --https-port) https_port=$2 ;;
    --http-port) http_port=$2 ;;
    *) usage ;;
  esac
  shift 2
done
if [ -z "$server_name" ] || [ -z "$replicas" ] || [ -z "$cert" ] || [ -z "$key" ]; then usage; fi

# Values land in nginx syntax: refuse anything that could end a directive or open a block.
allowed='^[][A-Za-z0-9._:/,@+=-]+$'
for value in "$server_name" "$replicas" "$cert" "$key" "$https_port" "$http_port"; do
  if [[ ! $value =~ $allowed ]]; then
    echo "render-site.sh: refusing '$value' (letters, digits and ._:/,@+=[]- only)" >&2
    exit 2
  fi
done
[[ $https_port =~ ^[0-9]+$ && $http_port =~ ^[0-9]+$ ]] || { echo "render-site.sh: ports are numbers" >&2; exit 2; }

public_url="https://$server_name"
[ "$https_port" = 443 ] || public_url="$public_url:$https_port"

template="$(dirname "$0")/kumulus.conf.template"
while IFS= read -r line || [ -n "$line" ]; do
  if [[ $line == *@@REPLICA@@* ]]; then
    IFS=, read -ra addresses <<<"$replicas"
    for address in "${addresses[@]}"; do
      printf '%s\n' "${line//@@REPLICA@@/$address}"
    done
    continue
  fi
  line=${line//@@SERVER_NAME@@/$server_name}
  line=${line//@@PUBLIC_URL@@/$public_url}
  line=${line//@@TLS_CERT@@/$cert}
  line=${line//@@TLS_KEY@@/$key}
  line=${line//@@HTTPS_PORT@@/$https_port}
  line=${line//@@HTTP_PORT@@/$http_port}
  if [[ $line == *@@* ]]; then
    echo "render-site.sh: unknown placeholder in: $line" >&2
    exit 1
  fi
  printf '%s\n' "$line"
done <"$template"
