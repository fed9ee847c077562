{#- Fractional days from one timestamp to another, on every adapter (dbt's datediff in
    seconds, divided: whole days would round a 36-hour approval down to 1). -#}
{% macro days_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'second') }} as double precision) / 86400
{%- endmacro %}

{#- The day the models are "as of": the build date in UTC, or --vars '{as_of_date: 2026-06-01}'.
    Not current_date: that is the session's date, a day off UTC for hours every day where the
    session's time zone is not UTC (Snowflake's default is America/Los_Angeles). -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        {{ build_date() }}
    {%- endif -%}
{%- endmacro %}

{#- Today in UTC. -#}
{% macro build_date() -%}
    cast({{ utc_now() }} as date)
{%- endmacro %}

{#- The instant current spells are measured to: the build time (UTC, like the loaded
    timestamps), or the end of as_of_date. -#}
{% macro as_of_timestamp() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }} 23:59:59' as {{ dbt.type_timestamp() }})
    {%- else -%}
        {{ utc_now() }}
    {%- endif -%}
{%- endmacro %}

{#- Now, as a timestamp without time zone in UTC, whatever the session's time zone. -#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'kapwork')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    cast(current_timestamp at time zone 'UTC' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro snowflake__utc_now() -%}
    cast(convert_timezone('UTC', current_timestamp()) as timestamp_ntz)
{%- endmacro %}

{#- Minor units (cents) to major units, exactly: decimal(20, 2) on every adapter. -#}
{% macro cents_to_units(cents) -%}
    cast(({{ cents }}) / 100.0 as decimal(20, 2))
{%- endmacro %}
