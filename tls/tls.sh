#!/bin/sh
# Makes the test PKI for @x/mllp's TLS tests and examples (see README.md in
# this folder). Run from anywhere: `sh tls/tls.sh`. Needs openssl 1.1.1+.
# It replaces every file it makes; the results are committed so that tests
# run without openssl.
set -eu

cd "$(dirname "$0")"
DAYS=7300 # twenty years
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { # key FILE: a P-256 private key in PKCS#8 PEM
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

ca() { # ca DIR CN: a self-signed root CA
  mkdir -p "$1"
  key "$1/private_key.pem"
  openssl req -x509 -new -key "$1/private_key.pem" -sha256 -days "$DAYS" \
    -subj "/O=x-mllp test PKI/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$1/ca_certificate.pem"
}

leaf() { # leaf DIR CN CA_DIR EXTENSIONS [STARTDATE ENDDATE]
  mkdir -p "$1"
  key "$1/private_key.pem"
  openssl req -new -key "$1/private_key.pem" -subj "/O=x-mllp test PKI/CN=$2" \
    -out "$tmp/req.pem"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "authorityKeyIdentifier=keyid" "$4" >"$tmp/ext.cnf"
  if [ $# -ge 6 ]; then
    # A certificate valid only in the past: `openssl ca` can set the dates.
    mkdir -p "$tmp/db"
    : >"$tmp/db/index.txt"
    cat >"$tmp/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $tmp/db/index.txt
new_certs_dir = $tmp/db
certificate = $3/ca_certificate.pem
private_key = $3/private_key.pem
default_md = sha256
policy = any
rand_serial = yes
unique_subject = no
[any]
organizationName = optional
commonName = supplied
EOF
    openssl ca -batch -notext -config "$tmp/ca.cnf" -extfile "$tmp/ext.cnf" \
      -startdate "$5" -enddate "$6" -in "$tmp/req.pem" \
      -out "$1/certificate.pem" 2>/dev/null
  else
    openssl x509 -req -in "$tmp/req.pem" -CA "$3/ca_certificate.pem" \
      -CAkey "$3/private_key.pem" -CAcreateserial -CAserial "$tmp/serial" \
      -sha256 -days "$DAYS" -extfile "$tmp/ext.cnf" -out "$1/certificate.pem" \
      2>/dev/null
  fi
}

ca root-ca "x-mllp test root CA"
ca untrusted-ca "x-mllp untrusted CA"

leaf server localhost root-ca \
  "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
# The same name without the IP address: connecting by IP must fail unless
# the client names "localhost" as the server to verify.
leaf server-name-only localhost root-ca \
  "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost"
leaf client client-1 root-ca \
  "extendedKeyUsage=clientAuth
subjectAltName=DNS:client-1"
leaf mixed-case-client MIXED-CASE-client-cert root-ca \
  "extendedKeyUsage=clientAuth
subjectAltName=DNS:MIXED-CASE-client-cert"
leaf expired-client expired-client root-ca \
  "extendedKeyUsage=clientAuth
subjectAltName=DNS:expired-client" 20190101000000Z 20200101000000Z
leaf untrusted-client client-1 untrusted-ca \
  "extendedKeyUsage=clientAuth
subjectAltName=DNS:client-1"

# The seed's file names for the server and client pairs.
mv server/certificate.pem server/server_certificate.pem
mv client/certificate.pem client/client_certificate.pem
for dir in mixed-case-client expired-client untrusted-client; do
  mv "$dir/certificate.pem" "$dir/client_certificate.pem"
done

mv server-name-only/certificate.pem server-name-only/server_certificate.pem

for cert in server/server_certificate.pem \
  server-name-only/server_certificate.pem client/client_certificate.pem \
  mixed-case-client/client_certificate.pem \
  expired-client/client_certificate.pem \
  untrusted-client/client_certificate.pem; do
  printf '%s: ' "$cert"
  openssl x509 -in "$cert" -noout -subject -enddate | tr '\n' ' '
  echo
done
