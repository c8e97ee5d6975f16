#!/bin/bash
# monitor-auth.sh

# The guide's script (PRODUCTION_DEPLOYMENT.md, "Sample Monitoring Script"), two changes only:
# ENDPOINT comes from the environment (the guide's placeholder stays the default), and both
# curl calls send the bearer token, because /api/observability answers monitors only with
# Authorization: Bearer $OBSERVABILITY_TOKEN. `regcopilot monitor` applies the whole table.
ENDPOINT="${ENDPOINT:-https://your-app.com/api/observability}"
ALERT_THRESHOLD=90

CACHE_HIT_RATE=$(curl -s -H "Authorization: Bearer $OBSERVABILITY_TOKEN" $ENDPOINT | jq '.authentication.validations.cacheHitRate')

if (( $(echo "$CACHE_HIT_RATE < $ALERT_THRESHOLD" | bc -l) )); then
  echo "ALERT: Cache hit rate is $CACHE_HIT_RATE% (threshold: $ALERT_THRESHOLD%)"
  # Send alert to Slack/PagerDuty/etc
fi

# Check cache backend
BACKEND=$(curl -s -H "Authorization: Bearer $OBSERVABILITY_TOKEN" $ENDPOINT | jq -r '.validationCache.backend')
if [ "$BACKEND" != "redis" ]; then
  echo "WARNING: Using in-memory cache ($BACKEND) - not suitable for production"
fi
