<?php
/*
 * Concurrent "AJAX views" updating one session, with and without httplock.
 *
 * Like PHP-FPM serving two AJAX requests of one browser in two worker
 * processes: each view (a forked process) loads the session, works 5-20 ms,
 * records its visit and bumps a counter, and saves it.  Without a lock the
 * later save throws away the earlier one's change.
 *
 *     php session_views.php [--no-lock] [--views=N] [--session=ID] [--file=PATH]
 *         [--wait=SECS]
 *
 * --wait: how long a view waits for the lock (default 30 s).
 *
 * Prints e.g. "views=20 updates_expected=20 updates_kept=20 lost=0" and
 * exits 0 if every view ran and kept its update, 1 otherwise (a view
 * failed, or an update was lost: so --no-lock usually exits 1).  The server
 * is $HTTPLOCK_URL (default http://127.0.0.1:8080/).  Needs the pcntl and
 * curl extensions.
 */

require __DIR__ . '/httplock.php';

function load_session(string $path): array
{
    return json_decode(file_get_contents($path), true);
}

function save_session(string $path, array $session): void
{
    // Write a new file and rename it over the old one, so that a reader
    // never sees half a file.  (That does not prevent lost updates.)
    $tmp = "$path." . getmypid() . '.tmp';
    file_put_contents($tmp, json_encode($session, JSON_FORCE_OBJECT));
    rename($tmp, $path);
}

/* One AJAX view: a read-modify-write of the session. */
function view(string $path, string $viewId): void
{
    $session = load_session($path);
    usleep(random_int(5000, 20000));          // "begins processing"
    $session['visited'][$viewId] = microtime(true);
    $session['counter']++;
    save_session($path, $session);
}

$opts = getopt('', ['no-lock', 'views:', 'session:', 'file:', 'wait:']);
$useLock = !isset($opts['no-lock']);
$views = (int)($opts['views'] ?? 20);
$wait = (float)($opts['wait'] ?? 30);
$sessionId = $opts['session'] ?? '42';
$path = $opts['file'] ?? sys_get_temp_dir() . "/httplock-session-$sessionId.json";

save_session($path, ['visited' => [], 'counter' => 0]);   // a fresh session

// Start all views at the same moment, like a burst of AJAX requests: each
// waits for the end of this pipe, which comes when the parent, having
// started them all, closes its end.
[$startRead, $startWrite] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
$children = [];
for ($i = 0; $i < $views; $i++) {
    $pid = pcntl_fork();
    if ($pid < 0) {
        fwrite(STDERR, "fork failed\n");
        exit(1);
    }
    if ($pid === 0) {
        $viewId = "view-$i";
        fclose($startWrite);
        fread($startRead, 1);               // returns at the end of the pipe
        fclose($startRead);
        try {
            if ($useLock) {
                // The fix: hold the session's lock around the
                // read-modify-write.  Every process and machine using the
                // same lock name takes turns.
                $locks = new HttpLock();
                with_lock($locks, "session:$sessionId", function (array $grant) use ($path, $viewId) {
                    view($path, $viewId);
                }, ['timeout' => $wait, 'ttl' => 10, 'owner' => $viewId]);
            } else {
                view($path, $viewId);
            }
        } catch (Throwable $e) {
            fwrite(STDERR, "$viewId: " . $e->getMessage() . "\n");
            exit(1);
        }
        exit(0);
    }
    $children[] = $pid;
}
fclose($startWrite);                        // go
fclose($startRead);

$failed = 0;
foreach ($children as $pid) {
    pcntl_waitpid($pid, $status);
    if (!pcntl_wifexited($status) || pcntl_wexitstatus($status) !== 0) {
        $failed++;
    }
}

$session = load_session($path);
$kept = count($session['visited']);
printf("views=%d updates_expected=%d updates_kept=%d lost=%d counter=%d failed=%d mode=%s\n",
    $views, $views, $kept, $views - $kept, $session['counter'], $failed, $useLock ? 'lock' : 'nolock');
exit($failed === 0 && $kept === $views ? 0 : 1);
