#!/usr/bin/env bash
# Smoke test of a deployed ATM simulator HTTP service: ./scripts/smoke_test.sh BASE_URL
#
# Checks health, readiness and /docs, signs in, reads an account, starts a lab ATM, drives a
# withdrawal through the lab API, checks the balance moved by exactly the amount, and cleans up.
# One line per check; exits 0 only when every check passed. Needs bash and curl only.
#
# Environment (defaults in brackets):
#   OPERATOR_NAME [admin]           an operator with the operator or admin role
#   OPERATOR_PASSWORD [change-me-admin-password]
#   SMOKE_ACCOUNT [10000001]        the account the wallet card draws on (Alice's checking)
#   SMOKE_CARD [alice]              the wallet card inserted; SMOKE_PIN [1234] its test PIN
#   SMOKE_PROFILE [default]         the ATM profile of the lab ATM (terminal ATM00001)
#   ENVIRONMENT [development]       production: /docs must be hidden instead of served
set -u

BASE_URL="${1:-}"
if [[ -z "$BASE_URL" ]]; then
    echo "usage: $0 BASE_URL   (e.g. http://localhost:8000)" >&2
    exit 2
fi
BASE_URL="${BASE_URL%/}"
OPERATOR_NAME="${OPERATOR_NAME:-admin}"
OPERATOR_PASSWORD="${OPERATOR_PASSWORD:-change-me-admin-password}"
ACCOUNT="${SMOKE_ACCOUNT:-10000001}"
CARD="${SMOKE_CARD:-alice}"
PIN="${SMOKE_PIN:-1234}"
PROFILE="${SMOKE_PROFILE:-default}"
AMOUNT_KEY="F2"   # fast cash 50.00 on the amount screen
AMOUNT=5000       # cents

FAILED=0
TOKEN=""
TERMINAL=""
STATUS=""
BODY=""

ok() { echo "ok   $1"; }
fail() { echo "FAIL $1"; FAILED=1; }

# call METHOD PATH [JSON]: sets STATUS and BODY.
call() {
    local method="$1" path="$2" data="${3:-}"
    local args=(-sS -m 60 -X "$method" -w $'\n%{http_code}' -H "Accept: application/json")
    # The token (a curl config on fd 3) and the body, which may hold the password (stdin), never
    # go on curl's command line, where any user of the machine could read them.
    local config=""
    [[ -n "$TOKEN" ]] && config="header = \"Authorization: Bearer $TOKEN\""
    [[ -n "$data" ]] && args+=(-H "Content-Type: application/json" --data-binary @-)
    local out
    if ! out="$(curl "${args[@]}" -K /dev/fd/3 "$BASE_URL$path" 2>&1 <<<"$data" 3<<<"$config")"
    then
        STATUS="000"
        BODY="$out"
        return
    fi
    STATUS="${out##*$'\n'}"
    BODY="${out%$'\n'*}"
}

# field NAME: the string or number value of "NAME" in BODY (the last, if it appears twice).
field() {
    sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$BODY" | head -n 1
}

detail() { printf '%s' "$BODY" | head -c 300; }

cleanup() {
    if [[ -n "$TERMINAL" ]]; then
        call DELETE "/lab/atms/$TERMINAL"
        if [[ "$STATUS" == "204" ]]; then ok "clean up: lab ATM $TERMINAL stopped"
        else fail "clean up: stopping lab ATM $TERMINAL answered $STATUS $(detail)"; fi
        TERMINAL=""
    fi
    if [[ -n "$TOKEN" ]]; then
        call DELETE /auth/token
        if [[ "$STATUS" == "204" ]]; then ok "clean up: signed out"
        else fail "clean up: sign-out answered $STATUS"; fi
        TOKEN=""
    fi
}

finish() {
    cleanup
    if [[ "$FAILED" == 0 ]]; then echo "smoke test passed: $BASE_URL"; exit 0; fi
    echo "smoke test FAILED: $BASE_URL"
    exit 1
}

# step PATH JSON: one lab action on the ATM; false (and the reason in BODY) unless it is 200.
step() {
    call POST "/lab/atms/$TERMINAL/$1" "$2"
    [[ "$STATUS" == "200" ]]
}

call GET /health
if [[ "$STATUS" == "200" && "$(field status)" == "ok" ]]; then ok "health"
else fail "health: $STATUS $(detail)"; fi

call GET /ready
if [[ "$STATUS" == "200" ]]; then ok "ready"
else fail "ready: $STATUS $(detail)"; fi

call GET /docs
if [[ "${ENVIRONMENT:-development}" == "production" ]]; then
    if [[ "$STATUS" == "404" ]]; then ok "docs hidden (production)"
    else fail "docs: production must hide /docs, got $STATUS"; fi
elif [[ "$STATUS" == "200" ]]; then ok "docs"
else fail "docs: $STATUS"; fi

call POST /auth/token "{\"name\":\"$OPERATOR_NAME\",\"password\":\"$OPERATOR_PASSWORD\"}"
if [[ "$STATUS" == "200" ]]; then
    TOKEN="$(field access_token)"
    ok "sign in as $OPERATOR_NAME ($(field role))"
else
    fail "sign in as $OPERATOR_NAME: $STATUS $(detail)"
    finish
fi

call GET "/bank/accounts/$ACCOUNT"
BEFORE="$(field ledger_balance)"
if [[ "$STATUS" == "200" && -n "$BEFORE" ]]; then ok "read account $ACCOUNT: $BEFORE cents"
else fail "read account $ACCOUNT: $STATUS $(detail)"; finish; fi

call POST /lab/atms "{\"profile\":\"$PROFILE\"}"
if [[ "$STATUS" == "201" ]]; then
    TERMINAL="$(field terminal_id)"
    ok "lab ATM $TERMINAL started (profile $PROFILE)"
else
    fail "start a lab ATM: $STATUS $(detail)"
    finish
fi

trap 'fail "interrupted"; finish' INT TERM

PIN_KEYS="$(sed 's/./"&",/g' <<<"$PIN")"
WITHDRAWAL_FAILED=""
while read -r path body; do
    if ! step "$path" "$body"; then
        WITHDRAWAL_FAILED="$path: $STATUS $(detail)"
        break
    fi
done <<EOF
wait {"state":"idle"}
customer/insert-card {"card":"$CARD"}
wait {"state":"pin_entry"}
customer/press {"keys":[${PIN_KEYS}"enter"]}
wait {"state":"transaction_menu"}
customer/press {"keys":["F1"]}
wait {"state":"account_selection"}
customer/press {"keys":["F1"]}
wait {"state":"amount_entry"}
customer/press {"keys":["$AMOUNT_KEY"]}
wait {"state":"ejecting_card"}
customer/take {"item":"card"}
wait {"state":"presenting_cash"}
customer/take {"item":"cash"}
wait {"state":"idle"}
EOF
if [[ -z "$WITHDRAWAL_FAILED" ]]; then ok "withdrawal of $AMOUNT cents driven through lab ATM $TERMINAL"
else fail "withdrawal through lab ATM $TERMINAL: $WITHDRAWAL_FAILED"; fi

call GET "/bank/accounts/$ACCOUNT"
AFTER="$(field ledger_balance)"
if [[ "$STATUS" == "200" && -n "$AFTER" && $((BEFORE - AFTER)) == "$AMOUNT" ]]; then
    ok "balance of $ACCOUNT moved by exactly $AMOUNT cents ($BEFORE -> $AFTER)"
else
    fail "balance of $ACCOUNT: expected $((BEFORE - AMOUNT)), found ${AFTER:-?} ($STATUS)"
fi

finish
