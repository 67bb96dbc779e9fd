<?php
/*
 * A small httplock client for PHP (needs the curl extension).
 *
 *     require 'httplock.php';
 *
 *     $locks = new HttpLock();                 // $HTTPLOCK_URL or http://127.0.0.1:8080/
 *     with_lock($locks, 'session:42', function (array $grant) {
 *         // ... load the session, change it, save it ...
 *     }, ['timeout' => 10, 'ttl' => 30]);
 *
 * with_lock() acquires, runs the callable, and always releases (also when
 * the callable throws).  PHP has no threads to renew a lease in the
 * background: choose a ttl longer than the work, or call
 * $locks->renew($name, $grant['token']) now and then.  If the lease was
 * gone at the release (it expired, or someone released or cancelled it),
 * with_lock() throws HttpLockLeaseLost, whose message says which; so does
 * renew().
 *
 * Every failure is an HttpLockException whose getErrorCode() is the
 * server's error code ("timeout", "not_held", ...) or "connection" /
 * "protocol" when there was no usable answer.
 */

class HttpLockException extends RuntimeException
{
    private string $errorCode;
    private int $httpStatus;

    public function __construct(string $errorCode, string $message, int $httpStatus = 0)
    {
        parent::__construct("$errorCode: $message", $httpStatus);
        $this->errorCode = $errorCode;
        $this->httpStatus = $httpStatus;
    }

    /** The server's error code, or "connection" / "protocol". */
    public function getErrorCode(): string { return $this->errorCode; }

    /** The HTTP status, or 0 if there was no answer. */
    public function getHttpStatus(): int { return $this->httpStatus; }
}

/** The lock was still held when the acquire's timeout ran out (423). */
class HttpLockTimeout extends HttpLockException {}

/**
 * The lease was gone (expired, or released or cancelled by someone else)
 * at a renew or release: someone else may have held the lock meanwhile.
 */
class HttpLockLeaseLost extends HttpLockException {}

class HttpLock
{
    const DEFAULT_URL = 'http://127.0.0.1:8080/';
    const ASSUMED_MAX_WAIT = 30.0;  // the server's max_wait when no timeout is given
    const HTTP_MARGIN = 10.0;       // added to every HTTP timeout, seconds
    const RETRY_FOR = 10.0;         // keep retrying an unreachable server this long

    private string $url;
    /** token => expires_at (Unix time, the server's) of our grants */
    private array $expiresAt = [];

    public function __construct(?string $url = null)
    {
        $url = $url ?: (getenv('HTTPLOCK_URL') ?: self::DEFAULT_URL);
        $this->url = rtrim($url, '/');
    }

    /**
     * Waits for lock $name and returns the grant (token, fence, ttl,
     * expires_at, ..., request_id).  $opts: timeout (seconds; absent: the
     * server's max_wait), ttl, owner, request_id.  Throws HttpLockTimeout if
     * the lock is still held after the timeout.
     *
     * The request carries a request_id (a random one unless given).  When
     * the connection fails or the server answers 503 unavailable we ask
     * again with the same id and get back the same grant or queue place,
     * never a second grant.  If we give up, we cancel that id.
     */
    public function acquire(string $name, array $opts = []): array
    {
        $requestId = $opts['request_id'] ?? bin2hex(random_bytes(16));
        $params = ['request_id' => $requestId];
        foreach (['ttl', 'owner'] as $k) {
            if (isset($opts[$k])) {
                $params[$k] = (string)$opts[$k];
            }
        }
        $timeout = isset($opts['timeout']) ? (float)$opts['timeout'] : null;
        $wait = $timeout ?? self::ASSUMED_MAX_WAIT;
        $waitUntil = microtime(true) + $wait;
        // A retry asks only for the time that is left of our wait.
        $before = function (array &$p) use ($timeout, $waitUntil) {
            if ($timeout !== null) {
                $p['timeout'] = sprintf('%.3f', max(0.0, $waitUntil - microtime(true)));
            }
        };
        try {
            $grant = $this->retrying('POST', $this->path($name, 'acquire'), $params,
                $wait + self::HTTP_MARGIN, $wait + self::RETRY_FOR, $before);
        } catch (HttpLockException $e) {
            if (in_array($e->getErrorCode(), ['connection', 'protocol', 'unavailable'], true)) {
                // Best effort, briefly: the server was just unreachable.
                try {
                    $this->retrying('POST', $this->path($name, 'cancel'),
                        ['request_id' => $requestId], self::HTTP_MARGIN, 1.0);
                } catch (HttpLockException $ignored) {
                }
            }
            throw $e;
        }
        $grant['request_id'] = $requestId;
        $this->expiresAt[$grant['token']] = (float)$grant['expires_at'];
        return $grant;
    }

    /**
     * Why the grant with $token no longer holds lock $name, after the
     * server said not_held: it answers that both when the lease expired
     * and when the grant was released or cancelled, so tell them apart by
     * the grant's last known expires_at and this machine's clock.
     */
    public function lostReason(string $name, string $token): string
    {
        $expires = $this->expiresAt[$token] ?? null;
        if ($expires === null) {
            return "the lock '$name' is not held with this token";
        }
        $left = $expires - microtime(true);
        if ($left <= 0) {
            return sprintf("the lease on '%s' expired %.1f s ago", $name, -$left);
        }
        return sprintf("the lock '%s' was released or cancelled by someone else "
            . "(its lease had %.1f s left)", $name, $left);
    }

    /** Releases the grant with $token; "not_held" if it no longer holds the lock. */
    public function release(string $name, string $token): array
    {
        $attempts = 0;
        $count = function (array &$p) use (&$attempts) { $attempts++; };
        try {
            $r = $this->retrying('POST', $this->path($name, 'release'), ['token' => $token],
                self::HTTP_MARGIN, self::RETRY_FOR, $count);
        } catch (HttpLockException $e) {
            // An earlier attempt got through but its answer was lost.
            if ($e->getErrorCode() === 'not_held' && $attempts > 1) {
                unset($this->expiresAt[$token]);
                return ['lock' => $name, 'released' => true];
            }
            throw $e;
        }
        unset($this->expiresAt[$token]);
        return $r;
    }

    /**
     * Extends the lease to now + $ttl (null: the grant's own ttl).  Throws
     * HttpLockLeaseLost (code "not_held") once the lease is gone.
     */
    public function renew(string $name, string $token, ?float $ttl = null): array
    {
        $params = ['token' => $token];
        if ($ttl !== null) {
            $params['ttl'] = (string)$ttl;
        }
        try {
            $grant = $this->retrying('POST', $this->path($name, 'renew'), $params,
                self::HTTP_MARGIN, self::RETRY_FOR);
        } catch (HttpLockException $e) {
            if ($e->getErrorCode() === 'not_held') {
                throw new HttpLockLeaseLost('not_held', $this->lostReason($name, $token), 409);
            }
            throw $e;
        }
        $this->expiresAt[$token] = (float)$grant['expires_at'];
        return $grant;
    }

    /** Withdraws the queued acquire with $requestId, or releases its grant. */
    public function cancel(string $name, string $requestId): array
    {
        return $this->retrying('POST', $this->path($name, 'cancel'),
            ['request_id' => $requestId], self::HTTP_MARGIN, self::RETRY_FOR);
    }

    /** ['lock', 'held', 'holders' => [...], 'waiters'] of lock $name. */
    public function status(string $name): array
    {
        return $this->retrying('GET', $this->path($name), [], self::HTTP_MARGIN, self::RETRY_FOR);
    }

    private function path(string $name, ?string $action = null): string
    {
        return '/lock/' . rawurlencode($name) . ($action === null ? '' : "/$action");
    }

    /**
     * One request, retried with backoff for up to $retryFor seconds while it
     * fails without an answer or with 503 unavailable.  $before, if given,
     * may change the parameters of each attempt.
     */
    private function retrying(string $method, string $path, array $params, float $httpTimeout,
                              float $retryFor, ?callable $before = null): array
    {
        $giveUp = microtime(true) + $retryFor;
        $delay = 0.05;
        while (true) {
            if ($before !== null) {
                $before($params);
            }
            [$retry, $result] = $this->request($method, $path, $params, $httpTimeout);
            if (!$retry) {
                if ($result instanceof HttpLockException) {
                    throw $result;
                }
                return $result;
            }
            if (microtime(true) + $delay > $giveUp) {
                throw $result;
            }
            usleep((int)($delay * 1e6));
            $delay = min($delay * 2, 1.0);
        }
    }

    /**
     * Sends one request.  Returns [false, decoded JSON] on success,
     * [false, exception] for a final error, [true, exception] for one worth
     * retrying.
     */
    private function request(string $method, string $path, array $params, float $httpTimeout): array
    {
        $ch = curl_init();
        $url = $this->url . $path;
        $body = http_build_query($params);
        if ($method === 'POST') {
            // Always send a body (maybe empty): lighttpd refuses a POST
            // without a Content-Length (411).
            curl_setopt($ch, CURLOPT_POST, true);
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
        } elseif ($body !== '') {
            $url .= '?' . $body;
        }
        curl_setopt_array($ch, [
            CURLOPT_URL => $url,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT_MS => 5000,
            CURLOPT_TIMEOUT_MS => (int)($httpTimeout * 1000),
            CURLOPT_HTTPHEADER => ['Expect:'],   // no "100-continue" round trip
        ]);
        $data = curl_exec($ch);
        $status = (int)curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $curlError = curl_error($ch);
        curl_close($ch);

        if ($data === false) {
            return [true, new HttpLockException('connection', "$method $path: $curlError")];
        }
        $answer = json_decode($data, true);
        if (!is_array($answer)) {
            $e = new HttpLockException('protocol',
                "HTTP $status without a JSON body: " . substr($data, 0, 200), $status);
            // E.g. the web server's own 500 page while it restarts a worker.
            return [$status >= 500, $e];
        }
        if ($status >= 200 && $status < 300) {
            return [false, $answer];
        }
        $code = (string)($answer['error'] ?? "http_$status");
        $message = (string)($answer['message'] ?? '');
        if ($status === 423) {
            return [false, new HttpLockTimeout($code, $message, $status)];
        }
        return [$status === 503 && $code === 'unavailable',
                new HttpLockException($code, $message, $status)];
    }
}

/**
 * Runs $fn($grant) while holding lock $name, and always releases it.
 * $opts as for HttpLock::acquire().  Returns what $fn returns.  Throws
 * HttpLockLeaseLost if the lease was gone when $fn returned (its message
 * says whether it expired or someone released it): another process may
 * have held the lock meanwhile.
 */
function with_lock(HttpLock $locks, string $name, callable $fn, array $opts = [])
{
    $grant = $locks->acquire($name, $opts);
    $ok = false;
    try {
        $result = $fn($grant);
        $ok = true;
    } finally {
        try {
            $locks->release($name, $grant['token']);
        } catch (HttpLockException $e) {
            // Report a lost lease, unless $fn's own exception is on its way.
            if ($ok && $e->getErrorCode() === 'not_held') {
                throw new HttpLockLeaseLost('not_held',
                    $locks->lostReason($name, $grant['token']) . ' (found at the release)', 409);
            }
            if ($ok) {
                // Unreachable server: the lease will run out by itself.
                error_log("httplock: could not release '$name': " . $e->getMessage());
            }
        }
    }
    return $result;
}
