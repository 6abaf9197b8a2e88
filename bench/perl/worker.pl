#!/usr/bin/perl
# The Perl original's worker (bench/deployed.ts, scenario "perl"): a Perl Gearman::Worker serving
# FUNCNAME. It decodes the worker JSON the Controller forwards, takes the arg (a wall-clock stamp
# in ms put there by bench/perl/client.pl) and prints "lat <ms>" (handler start minus the stamp)
# per job, then returns a defined value: WORK_COMPLETE, so the Controller deletes the row.
#   perl bench/perl/worker.pl HOST:PORT FUNCNAME
use strict;
use warnings;
use Gearman::Worker;
use JSON::PP ();
use Time::HiRes qw(time);

my ($server, $funcname) = @ARGV;
die "usage: worker.pl HOST:PORT FUNCNAME\n" unless defined $funcname;
$| = 1;
$SIG{TERM} = $SIG{INT} = sub { exit 0 };
my $worker = Gearman::Worker->new(job_servers => [$server]);
$worker->register_function($funcname => sub {
    my $now = time() * 1000;
    my $job = JSON::PP::decode_json($_[0]->arg);
    printf "lat %.3f\n", $now - $job->{arg};
    return "ok";
});
$worker->work while 1;
