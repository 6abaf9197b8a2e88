#!/usr/bin/perl
# The Perl original's low-latency workload (bench/deployed.ts, scenario "perl"): one Perl
# Gearman::Client calling inject_jobs synchronously for SECONDS, one call every INTERVAL ms (the
# next starts INTERVAL ms after the previous one started, or at its answer when that came later). The request
# is the original's JSON ({"funcname","arg"}); the arg is a wall-clock stamp in ms, read by
# bench/perl/worker.pl. Prints one line at the end: "done <ok> <failed> <round trips in ms, comma-separated>".
#   perl bench/perl/client.pl HOST:PORT FUNCNAME SECONDS INTERVAL_MS
use strict;
use warnings;
use Gearman::Client;
use JSON::PP ();
use Time::HiRes qw(time sleep);

my ($server, $funcname, $seconds, $interval) = @ARGV;
die "usage: client.pl HOST:PORT FUNCNAME SECONDS INTERVAL_MS\n" unless defined $interval;
$| = 1;
my $json = JSON::PP->new->canonical;
my $client = Gearman::Client->new(job_servers => [$server]);
my ($ok, $failed) = (0, 0);
my @rt;
my $next = time();
my $deadline = $next + $seconds;
while (time() < $deadline) {
    my $now = time();
    sleep($next - $now) if $next > $now;
    my $start = time();
    $next = $start + $interval / 1000;
    my $request = $json->encode({ funcname => $funcname, arg => sprintf("%.3f", $start * 1000) });
    my $answer = $client->do_task("inject_jobs", $request, { timeout => 30 });
    push @rt, sprintf("%.3f", (time() - $start) * 1000);
    if (defined $answer) { $ok++ } else { $failed++ }
}
print "done $ok $failed ", join(",", @rt), "\n";
