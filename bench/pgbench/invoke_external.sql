-- Invoke an external function (its task goes to the queue 'inv').
SELECT dasa.invoke('inv_fn', '{"n": 1}');
