from django.db import migrations

# PostgreSQL announces every search job that ends (done or failed, by a worker or the reaper) on the
# "search_jobs" channel, with the job's id: search/waiting.py listens for it to answer ?wait requests.
CREATE = """
CREATE FUNCTION search_job_ended_notify() RETURNS trigger AS $$
BEGIN
    IF NEW.status IN ('done', 'failed') AND OLD.status IS DISTINCT FROM NEW.status THEN
        BEGIN
            PERFORM pg_notify('search_jobs', NEW.id::text);
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- waiting clients are a convenience: never fail the job's update for them
        END;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER search_job_ended AFTER UPDATE OF status ON search_searchjob
    FOR EACH ROW EXECUTE FUNCTION search_job_ended_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS search_job_ended ON search_searchjob;
DROP FUNCTION IF EXISTS search_job_ended_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("search", "0005_local_features_stored_uncompressed")]

    operations = [migrations.RunSQL(CREATE, DROP)]
