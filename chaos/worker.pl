#!/usr/bin/perl
# The chaos soak's Perl worker (chaos/run.ts starts it when Gearman::Worker is installed): a Perl
# Gearman::Worker serving FUNCNAME on every job server given, as the original's workers do. It
# gets `controller` jobs only (injected with inject_jobs), through the Controller, which deletes
# the row on WORK_COMPLETE. It writes the same ledger lines as chaos/worker.ts.
#   perl chaos/worker.pl HOST:PORT[,HOST:PORT] FUNCNAME LEDGER NAME
use strict;
use warnings;
use Gearman::Worker;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use IO::Handle;

my ($servers, $funcname, $ledger, $name) = @ARGV;
die "usage: worker.pl HOST:PORT[,HOST:PORT] FUNCNAME LEDGER NAME\n" unless defined $name;
$| = 1;
$SIG{TERM} = $SIG{INT} = sub { exit 0 };
open(my $out, ">>", $ledger) or die "cannot open $ledger: $!\n";
$out->autoflush(1);
my $json = JSON::PP->new->canonical;
sub entry {
    my ($ev, $id, $h) = @_;
    syswrite($out, $json->encode({ ev => $ev, id => $id, t => int(time() * 1000), p => $$ + 0, w => $name, h => $h }) . "\n");
}
my $worker = Gearman::Worker->new(job_servers => [split /,/, $servers]);
$worker->register_function($funcname => sub {
    my $job = JSON::PP::decode_json($_[0]->arg);
    my $arg = JSON::PP::decode_json($job->{arg});
    my $h = "$job->{dbid}:$job->{jobid}";
    entry("start", $arg->{id}, $h);
    sleep($arg->{sleepMs} / 1000) if $arg->{sleepMs} > 0;
    entry("done", $arg->{id}, $h);
    return "ok";
});
print "ready\n";
$worker->work while 1;
